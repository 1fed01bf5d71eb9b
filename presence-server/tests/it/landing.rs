//! `GET /` of cluster nodes (real processes on a real `redis-server`): the
//! status page names the node, the mode, Redis's state and every member of
//! the cluster, and holds no secret. The `--dev` landing page and the
//! single node's page are tested in Chromium (`clients/js/tests/landing.test.js`).

use std::time::{Duration, Instant};

use crate::hub_process::HubProcess;
use crate::redis_support::RedisServer;
use crate::support::{ADMIN_KEY, SECRET};

#[tokio::test]
async fn a_cluster_node_s_status_page_lists_every_member() {
    let redis = RedisServer::start().await;
    let a = HubProcess::cluster_node(&redis.url(), "alpha", 5_000).await;
    let _b = HubProcess::cluster_node(&redis.url(), "beta", 5_000).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/", a.addr);
    // Members are as of the node's last heartbeat (every second).
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let r = http.get(&url).send().await.expect("GET /");
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        if page.contains("data-node=\"alpha#") && page.contains("data-node=\"beta#") {
            break page;
        }
        assert!(Instant::now() < deadline, "members never listed:\n{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(page.contains("<dd id=\"mode\">cluster</dd>"), "{page}");
    assert!(page.contains("<dd id=\"node\">alpha#"), "{page}");
    assert!(page.contains("data-ready=\"true\""), "{page}");
    assert!(page.contains("id=\"redis\" data-up=\"true\""), "{page}");
    // A JWT starts with `eyJ` (base64 of `{"`).
    for secret in [ADMIN_KEY, SECRET, "eyJ", "Bearer"] {
        assert!(!page.contains(secret), "the status page shows {secret}");
    }
}
