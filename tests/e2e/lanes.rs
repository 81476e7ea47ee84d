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
