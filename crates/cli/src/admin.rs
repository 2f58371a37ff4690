//! `missive-cli admin`: the operators' commands, over a node's admin API with the admin
//! credential (docs/operations.md).

use anyhow::Context as _;
use clap::{Args, Subcommand};
use missive_client::{AdminClient, Trust};
use missive_proto::admin::{AuditEntry, PeriodStats, UserSummary};
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Args)]
pub struct AdminArgs {
    /// The node's admin address.
    #[arg(long, env = "MISSIVE_ADMIN_URL", default_value = "http://127.0.0.1:7390")]
    admin: String,
    /// The admin credential. Default: the content of --admin-token-file.
    #[arg(long, env = "MISSIVE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The file the server keeps its admin credential in.
    #[arg(long, env = "MISSIVE_ADMIN_TOKEN_FILE", default_value = "missive-data/admin.token")]
    admin_token_file: PathBuf,
    /// Print the API's JSON answer instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Lists users whose username or nickname contains QUERY (everyone without one).
    Users {
        query: Option<String>,
        /// Users after this id (the previous page's last).
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Shows a user (by username or id), its devices and whether it is online.
    User { user: String },
    /// Signs one device of a user out and closes its connection.
    Kick { user: String, device: u64 },
    /// Disables an account: every device is signed out and it cannot log in.
    Disable { user: String },
    /// Enables a disabled account.
    Enable { user: String },
    /// Sends a system notice into a user's inbox.
    Notice { user: String, text: String },
    /// Shows a group (by id or `<id>@chatroom`) and its members.
    Group { group: String },
    /// Shows a message of a user's inbox as stored, with the texts its edits replaced (kept
    /// with `--keep-edit-history`).
    Message { user: String, message_id: u64 },
    /// Prints the periodic statistics, newest first.
    Stats {
        /// How many periods (hours by default).
        #[arg(long, default_value_t = 24)]
        hours: u32,
    },
    /// Prints the store's totals.
    Totals,
    /// Prints the audit log of admin actions, newest first.
    Audit {
        /// Entries older than this id.
        #[arg(long, default_value_t = 0)]
        before: u64,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

pub async fn run(args: AdminArgs, trust: &Trust) -> anyhow::Result<()> {
    let token = match args.admin_token {
        Some(token) => token,
        None => std::fs::read_to_string(&args.admin_token_file)
            .with_context(|| {
                format!(
                    "reading the admin token from {} (pass --admin-token or \
                     --admin-token-file)",
                    args.admin_token_file.display()
                )
            })?
            .trim()
            .to_string(),
    };
    let api = AdminClient::new(&args.admin, &token, trust)?;
    let json = args.json;
    match args.command {
        AdminCommand::Users { query, after, limit } => {
            let answer = api.list_users(query.as_deref().unwrap_or(""), after, limit).await?;
            show(json, &answer, |answer| {
                for user in &answer.users {
                    println!("{}", describe_user(user));
                }
                if answer.next_after != 0 {
                    println!("(more: --after {})", answer.next_after);
                }
            })
        }
        AdminCommand::User { user } => show(json, &api.user(&user).await?, |answer| {
            if let Some(user) = &answer.user {
                println!("{}", describe_user(user));
            }
            println!("online: {}", if answer.online { "yes" } else { "no" });
            for device in &answer.devices {
                let state = match (device.revoked, device.online) {
                    (true, _) => "signed out",
                    (false, true) => "online",
                    (false, false) => "offline",
                };
                println!(
                    "  device {:<6} {:<24} {:<10} since {}  acked {}",
                    device.device_id,
                    device.device_name,
                    state,
                    utc_minute(device.created_at_ms),
                    device.acked_version
                );
            }
        }),
        AdminCommand::Kick { user, device } => show(json, &api.kick(&user, device).await?, |_| {
            println!("kicked device {device} of {user}")
        }),
        AdminCommand::Disable { user } => {
            show(json, &api.set_disabled(&user, true).await?, |_| println!("disabled {user}"))
        }
        AdminCommand::Enable { user } => {
            show(json, &api.set_disabled(&user, false).await?, |_| println!("enabled {user}"))
        }
        AdminCommand::Notice { user, text } => {
            show(json, &api.notice(&user, &text).await?, |answer| {
                let id = answer.message.as_ref().map_or(0, |m| m.id);
                println!("notice {id} sent to {user}");
            })
        }
        AdminCommand::Message { user, message_id } => {
            show(json, &api.message(&user, message_id).await?, |answer| {
                let Some(message) = &answer.message else { return };
                println!("#{} {} -> {}: {}", message.id, message.from, message.to, message.text);
                for edit in &message.edit_history {
                    let text = if edit.text.is_empty() { "(not kept)" } else { &edit.text };
                    println!("  replaced at {}: {text}", utc_minute(edit.replaced_at_ms));
                }
            })
        }
        AdminCommand::Group { group } => show(json, &api.group(&group).await?, |answer| {
            if let Some(group) = &answer.group {
                crate::print_group(group, true);
            }
            if answer.dissolved {
                println!("dissolved");
            }
        }),
        AdminCommand::Stats { hours } => show(json, &api.stats(hours).await?, |answer| {
            print!("{}", stats_table(&answer.periods))
        }),
        AdminCommand::Totals => show(json, &api.totals().await?, |answer| {
            println!("registered users  {}", answer.registered_users);
            println!("groups            {}", answer.groups);
            println!("messages          {}", answer.messages);
            println!("inbox entries     {}", answer.inbox_entries);
            println!("counted at        {} UTC", utc_minute(answer.counted_at_ms));
        }),
        AdminCommand::Audit { before, limit } => {
            show(json, &api.audit(before, limit).await?, |answer| {
                for entry in &answer.entries {
                    println!("{}", describe_audit(entry));
                }
            })
        }
    }
}

/// Prints an answer as its JSON, or as `text` prints it.
fn show<T: serde::Serialize>(json: bool, answer: &T, text: impl FnOnce(&T)) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(answer)?);
    } else {
        text(answer);
    }
    Ok(())
}

fn describe_user(user: &UserSummary) -> String {
    format!(
        "{:<8} {:<24} {:<24} since {}{}",
        user.user_id,
        user.username,
        user.nickname,
        utc_minute(user.created_at_ms),
        if user.disabled { "  DISABLED" } else { "" }
    )
}

fn describe_audit(entry: &AuditEntry) -> String {
    let code = missive_client::Code::from_u16(entry.code as u16)
        .map_or_else(|| entry.code.to_string(), |c| c.to_string());
    format!(
        "{:<6} {} UTC  {:<10} {:<12} {:<16} {:<20} {}",
        entry.id,
        utc_minute(entry.at_ms),
        entry.action,
        entry.target,
        code,
        entry.address,
        entry.detail
    )
}

/// The statistics as a table, one period per row.
fn stats_table(periods: &[PeriodStats]) -> String {
    let mut table = format!(
        "{:<18} {:>10} {:>6} {:>8} {:>8} {:>10} {:>10} {:>8}\n",
        "period (UTC)", "registered", "new", "peak", "average", "sent", "delivered", "active"
    );
    for period in periods {
        table += &format!(
            "{:<18} {:>10} {:>6} {:>8} {:>8.1} {:>10} {:>10} {:>8}\n",
            utc_minute(period.start_ms),
            period.registered_users,
            period.new_registrations,
            period.online_peak,
            period.online_average,
            period.messages_sent,
            period.messages_delivered,
            period.active_users
        );
    }
    if periods.is_empty() {
        table += "(no period has closed yet)\n";
    }
    table
}

/// `25 Nov 2026 10:00`: an instant to the minute, in UTC.
fn utc_minute(unix_ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(unix_ms).unwrap_or(0));
    // An HTTP date is `Wed, 25 Nov 2026 10:00:00 GMT`, always this long.
    httpdate::fmt_http_date(at)[5..22].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_print_to_the_minute_in_utc() {
        assert_eq!(utc_minute(1_764_068_400_000), "25 Nov 2025 11:00");
        assert_eq!(utc_minute(0), "01 Jan 1970 00:00");
    }

    #[test]
    fn the_stats_table_has_a_row_per_period() {
        let period = PeriodStats {
            start_ms: 1_764_068_400_000,
            period_s: 3600,
            registered_users: 1200,
            new_registrations: 12,
            online_peak: 300,
            online_average: 250.5,
            samples: 360,
            messages_sent: 9000,
            messages_delivered: 8900,
            active_users: 410,
        };
        let table = stats_table(&[period]);
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].starts_with("period (UTC)"));
        let cells: Vec<&str> = rows[1].split_whitespace().collect();
        assert_eq!(
            cells,
            ["25", "Nov", "2025", "11:00", "1200", "12", "300", "250.5", "9000", "8900", "410"]
        );
        assert!(stats_table(&[]).contains("no period has closed yet"));
    }
}
