# Fresh SQL shards on the test services' servers (scripts/test-services), for the benchmark
# scripts. Source it after sourcing the services' env file.
#
#   fresh_shards KIND NAME COUNT   COUNT empty databases NAME_0, NAME_1, ... on MariaDB
#                                  (mysql) or PostgreSQL (postgres), dropped first if there;
#                                  prints them as a --store-url list
#
# The urls name the server's own port, or SHARD_PORT_MYSQL / SHARD_PORT_POSTGRES when set
# (a forwarder in front of the server, on the same host).
fresh_shards() {
  local kind=$1 name=$2 count=$3 url port urls=() database
  case $kind in
    mysql) url=$MISSIVE_TEST_MYSQL port=${SHARD_PORT_MYSQL:-} ;;
    postgres) url=$MISSIVE_TEST_POSTGRES port=${SHARD_PORT_POSTGRES:-} ;;
    *) echo "fresh_shards: unknown kind $kind" >&2; return 2 ;;
  esac
  local address=${url##*@}
  local host=${address%:*} server_port=${address##*:}
  for ((shard = 0; shard < count; shard++)); do
    database=${name}_$shard
    case $kind in
      mysql)
        mariadb -uroot -h "$host" -P "$server_port" \
          -e "DROP DATABASE IF EXISTS $database; CREATE DATABASE $database"
        ;;
      postgres)
        psql -q -h "$host" -p "$server_port" -U root -d postgres \
          -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database" >/dev/null 2>&1
        ;;
    esac
    urls+=("${url%:*}:${port:-$server_port}/$database")
  done
  (IFS=,; echo "${urls[*]}")
}
