//! A real server on 127.0.0.1:0, as the end-to-end tests and the HTTP load bench run it:
//! `ledger::http::serve` until told to stop. (benches/http_load.rs includes this file too.)
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use events::Id;
use ledger::http::{AppState, Role, TokenStore};
use ledger::node::{Node, NodeConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A ledger served on 127.0.0.1:0, with an admin's and a recorder's token.
pub struct LiveServer {
    pub addr: SocketAddr,
    pub admin: String,
    pub recorder: String,
    pub node: Arc<Node>,
    pub db: sled::Db,
    /// Send (or drop) to shut the server down gracefully.
    pub stop: oneshot::Sender<()>,
    pub server: JoinHandle<std::io::Result<()>>,
}

/// Opens the ledger `ledger_id` in `dir` (on the system clock), creates the tokens of `admin`
/// and `recorder`, and serves it.
pub async fn start(dir: &Path, ledger_id: &str, admin: &str, recorder: &str) -> LiveServer {
    let (node, log) = Node::open_with_log(NodeConfig {
        data_dir: dir.to_owned(),
        ledger: Some(Id::new(ledger_id).unwrap()),
        clock: ledger::writer::system_clock(),
    })
    .await
    .expect("open ledger");
    let tokens = TokenStore::open(&log).unwrap();
    let (admin, _) = tokens.create(Id::new(admin).unwrap(), Role::Admin).unwrap();
    let (recorder, _) = tokens
        .create(Id::new(recorder).unwrap(), Role::Recorder)
        .unwrap();
    let node = Arc::new(node);
    let (addr, stop, server) = serve_local(AppState::new(node.clone(), tokens)).await;
    LiveServer {
        addr,
        admin,
        recorder,
        node,
        db: log.db().clone(),
        stop,
        server,
    }
}

/// Serves `state` on 127.0.0.1:0 until the returned sender is used or dropped.
pub async fn serve_local(
    state: AppState,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(ledger::http::serve(listener, state, async {
        let _ = stop_rx.await;
    }));
    (addr, stop_tx, server)
}
