//! Search end to end (protocol version 3), on every backend: a user finds their own messages
//! by a word, in English or in Chinese, and never a recalled one or someone else's.

use crate::harness::{PASSWORD, Server, cli, receive, user};
use missive_client::Client;
use missive_client::proto::{SearchRequest, SearchResponse};
use missive_storage_suite::{DatabaseServer, fresh_databases};

async fn search(client: &Client, query: &str) -> Vec<String> {
    let request = SearchRequest { query: query.into(), ..Default::default() };
    let SearchResponse { hits, .. } = client.search(request).await.unwrap();
    hits.into_iter().map(|hit| hit.message.unwrap().text).collect()
}

/// Alice and Bob talk in two languages, Alice recalls one message, Carol talks to Alice
/// alone; what each of them finds.
async fn search_on(server: &Server) {
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.ws(), "bob").await;
    let carol = user(&server.tcp, "carol").await;
    alice.send_text("bob", "Meet at the harbour at noon").await.unwrap();
    bob.send_text("alice", "好的，我们明天在北京见面").await.unwrap();
    let secret = alice.send_text("bob", "the harbour secret").await.unwrap();
    alice.recall(secret.message_id).await.unwrap();
    carol.send_text("alice", "harbour tour for two?").await.unwrap();
    receive(&bob, 2).await;

    // A message is found within about a second of being stored.
    for _ in 0..100 {
        if !search(&alice, "tour").await.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(search(&bob, "harbour").await, ["Meet at the harbour at noon"]);
    assert_eq!(search(&bob, "北京").await, ["好的，我们明天在北京见面"]);
    assert_eq!(search(&bob, "明天 见面").await, ["好的，我们明天在北京见面"]);
    assert!(search(&bob, "secret").await.is_empty(), "a recalled message is not found");
    assert!(search(&bob, "tour").await.is_empty(), "only one's own messages");
    assert_eq!(
        search(&alice, "HARBOUR").await,
        ["harbour tour for two?", "Meet at the harbour at noon"]
    );
    let only_bob = SearchRequest {
        query: "harbour".into(),
        conversation_id: bob.session().unwrap().user_id,
        ..Default::default()
    };
    let hits = alice.search(only_bob).await.unwrap().hits;
    assert_eq!(hits.len(), 1);
    let refused = alice.search(SearchRequest { query: "  ".into(), ..Default::default() }).await;
    assert_eq!(refused.unwrap_err().code(), Some(missive_client::Code::InvalidArgument));
}

#[tokio::test]
async fn search_on_the_embedded_store_and_from_the_cli() {
    let server = Server::start();
    search_on(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("alice");
    assert!(cli(&server.tcp, &profile, &["login", "alice", PASSWORD]).ok);
    let found = cli(&server.tcp, &profile, &["search", "北京", "--json"]);
    assert!(found.ok, "{}", found.stderr);
    let hit: serde_json::Value = serde_json::from_str(found.stdout.trim()).unwrap();
    assert_eq!(hit["text"], "好的，我们明天在北京见面");
    assert_eq!(hit["from"], "bob");
}

#[tokio::test]
async fn search_on_mariadb() {
    let urls = fresh_databases(DatabaseServer::MariaDb, "it_search", 2).await.join(",");
    search_on(&Server::start_with(&["--store-url", &urls])).await;
}

#[tokio::test]
async fn search_on_postgresql() {
    let urls = fresh_databases(DatabaseServer::Postgres, "it_search", 2).await.join(",");
    search_on(&Server::start_with(&["--store-url", &urls])).await;
}
