//! The one leader-following policy (`FollowPolicy`) on a real etcd that
//! goes away and comes back: a failure is reported only once it has lasted
//! `report_after`, and the observer then follows on with the store's state.

use std::time::{Duration, Instant};

use shardkit::lease::{Coordinator, FollowPolicy};
use shardkit::ErrorKind;
use shardkit_testkit::EtcdCluster;

const T: Duration = Duration::from_secs(20);

#[tokio::test]
async fn bad_policies_are_refused() {
    let coord = Coordinator::embedded();
    for policy in [
        FollowPolicy {
            retry_min: Duration::ZERO,
            ..FollowPolicy::default()
        },
        FollowPolicy {
            retry_min: Duration::from_secs(2),
            retry_max: Duration::from_secs(1),
            ..FollowPolicy::default()
        },
    ] {
        let e = coord.observe_with("svc", policy).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.message().contains("election \"svc\""), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_reported_after_report_after_and_following_resumes() {
    let mut cluster = tokio::task::spawn_blocking(EtcdCluster::single)
        .await
        .unwrap()
        .expect("start etcd (is etcd-server installed?)");
    let coord = Coordinator::connect_list(&cluster.endpoints(), Duration::from_secs(2))
        .await
        .unwrap();
    let session = coord.session_ttl(Duration::from_secs(60)).await.unwrap();
    let election = session.election("svc").unwrap();
    election.campaign(b"leader-1").await.unwrap();

    let report_after = Duration::from_millis(800);
    let mut observer = coord
        .observe_with(
            "svc",
            FollowPolicy {
                report_after,
                ..FollowPolicy::default()
            },
        )
        .unwrap();
    let first = tokio::time::timeout(T, observer.next()).await.unwrap();
    assert_eq!(first.unwrap().unwrap().value, b"leader-1");

    cluster = tokio::task::spawn_blocking(move || {
        cluster.stop(0).unwrap();
        cluster
    })
    .await
    .unwrap();
    let stopped = Instant::now();
    let e = tokio::time::timeout(T, observer.next())
        .await
        .expect("the failure is reported, not retried forever")
        .unwrap_err();
    let took = stopped.elapsed();
    assert!(took >= report_after, "reported after {took:?}: {e}");
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Io
        ),
        "{e}"
    );
    assert!(e.message().starts_with("following election \"svc\""), "{e}");

    cluster = tokio::task::spawn_blocking(move || {
        cluster.restart(0).unwrap();
        cluster
    })
    .await
    .unwrap();
    // After an error the next state comes even though nothing changed.
    let back = tokio::time::timeout(T, observer.next()).await.unwrap();
    let back = back.expect("following resumes once etcd is back");
    assert_eq!(back.map(|l| l.value), Some(b"leader-1".to_vec()));
    drop(cluster);
}
