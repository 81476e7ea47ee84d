//! A downstream service serves each calling BFF on threads of its own:
//! a BFF whose calls keep every one of its threads busy does not hold up
//! another BFF's calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tailor_e2e::Server;
use tailor_interceptors::metrics::ClientType;
use tailor_proto::reviews::v1::reviews_service_client::ReviewsServiceClient;
use tailor_proto::reviews::v1::reviews_service_server::{ReviewsService, ReviewsServiceServer};
use tailor_proto::reviews::v1::{
    BatchGetReviewSummariesRequest, BatchGetReviewSummariesResponse, GetReviewSummaryRequest,
    GetReviewSummaryResponse, ListReviewsRequest, ListReviewsResponse,
};
use tailor_runtime::{GrpcServer, ServeOptions};
use tonic::{Request, Response, Status};

/// A reviews service whose mobile calls spin on the CPU until released:
/// a mobile BFF flooding it, at its most extreme.
#[derive(Clone, Default)]
struct Hog {
    spinning: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    released: Arc<AtomicBool>,
}

/// How long a mobile call spins at most, should the test fail to release it.
const SPIN_AT_MOST: Duration = Duration::from_secs(20);

#[tonic::async_trait]
impl ReviewsService for Hog {
    async fn list_reviews(
        &self,
        request: Request<ListReviewsRequest>,
    ) -> Result<Response<ListReviewsResponse>, Status> {
        if request.extensions().get::<ClientType>() == Some(&ClientType("mobile")) {
            self.spinning.fetch_add(1, Ordering::AcqRel);
            // Holds this thread: nothing else runs on it meanwhile.
            let began = Instant::now();
            while !self.released.load(Ordering::Acquire) && began.elapsed() < SPIN_AT_MOST {
                std::hint::spin_loop();
            }
            self.finished.fetch_add(1, Ordering::AcqRel);
        }
        Ok(Response::new(ListReviewsResponse::default()))
    }

    async fn get_review_summary(
        &self,
        _request: Request<GetReviewSummaryRequest>,
    ) -> Result<Response<GetReviewSummaryResponse>, Status> {
        Ok(Response::new(GetReviewSummaryResponse::default()))
    }

    async fn batch_get_review_summaries(
        &self,
        _request: Request<BatchGetReviewSummariesRequest>,
    ) -> Result<Response<BatchGetReviewSummariesResponse>, Status> {
        Ok(Response::new(BatchGetReviewSummariesResponse::default()))
    }
}

#[tokio::test]
async fn a_bff_holding_every_thread_of_its_lane_does_not_hold_up_another_bffs_calls() {
    let hog = Hog::default();
    // As many spinning mobile calls as a lane has threads (one per CPU),
    // and admission slots to spare for the web call.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut options = ServeOptions::default();
    options.load.shares = options.load.shares.with_slots(threads + 1);
    let server = Server::start_service(
        GrpcServer::new("reviews").add_service(ReviewsServiceServer::new(hog.clone())),
        options,
    )
    .await;

    let mobile = ReviewsServiceClient::new(server.channel_as("mobile-bff").await);
    let web = ReviewsServiceClient::new(server.channel_as("web-bff").await);
    let floods: Vec<_> = (0..threads)
        .map(|_| {
            let mut mobile = mobile.clone();
            tokio::spawn(async move { mobile.list_reviews(ListReviewsRequest::default()).await })
        })
        .collect();
    let waited = Instant::now();
    while hog.spinning.load(Ordering::Acquire) < threads {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "only {} of {threads} mobile calls started",
            hog.spinning.load(Ordering::Acquire)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Every mobile thread spins; the web call is read, run and answered.
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        web.clone().get_review_summary(GetReviewSummaryRequest {
            product_id: "prod-000001".into(),
        }),
    )
    .await;
    let mobile_finished = hog.finished.load(Ordering::Acquire);
    hog.released.store(true, Ordering::Release);
    assert!(answer.is_ok(), "the web call waited for the mobile calls");
    answer.unwrap().unwrap();
    assert_eq!(
        mobile_finished, 0,
        "the web call was answered only after mobile calls ended"
    );

    // Released, the mobile calls are answered too.
    for flood in floods {
        flood.await.unwrap().unwrap();
    }
    server.stop().await;
}

/// The threads of `pid` named `name`, each with the CPUs it may run on as
/// the kernel lists them.
fn threads_named(pid: u32, name: &str) -> Vec<String> {
    let mut allowed = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
        if let Some(cpus) = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        {
            allowed.push(cpus.trim().to_owned());
        }
    }
    allowed
}

/// `--lane-cpus` on a service binary: the mobile lane's threads run on
/// the CPU reserved for it, the web lane's anywhere; a CPU the process may
/// not use, or a client type there is not, refuses the start and says why.
#[tokio::test]
async fn a_service_binary_runs_a_lane_on_the_cpus_reserved_for_it() {
    use std::process::Stdio;

    let data = tempfile::tempdir().unwrap();
    let catalog = |cpus: &str| {
        let mut command = tailor_e2e::command("tailor-catalog");
        command
            .args(["--listen", "127.0.0.1:0", "--products", "20", "--data-dir"])
            .arg(data.path())
            .arg("--trust-dir")
            .arg(&tailor_e2e::trust().dir)
            .args(["--lane-cpus", cpus]);
        command
    };
    for (cpus, says) in [
        ("web=1023", "web lane's CPUs 1023-1023"),
        ("desktop=0", "`desktop` is not a client type"),
    ] {
        let output = catalog(cpus).output().await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{cpus}: started");
        assert!(stderr.contains(says), "{cpus}: {stderr}");
        assert!(!stdout.contains("listening"), "{cpus}: announced {stdout}");
    }

    let mut child = catalog("mobile=0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let began = Instant::now();
    while threads_named(pid, "catalog-mobile").is_empty()
        || threads_named(pid, "catalog-web").is_empty()
    {
        assert!(began.elapsed() < Duration::from_secs(60), "no lane threads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The main thread: where threads not confined may run.
    let everywhere = threads_named(pid, "tailor-catalog");
    let mobile = threads_named(pid, "catalog-mobile");
    assert!(mobile.iter().all(|cpus| cpus == "0"), "{mobile:?}");
    let web = threads_named(pid, "catalog-web");
    assert!(!everywhere.is_empty());
    assert!(
        web.iter().all(|cpus| *cpus == everywhere[0]),
        "{web:?} against {everywhere:?}"
    );
    child.start_kill().unwrap();
}
