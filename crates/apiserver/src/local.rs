//! In-process access to the API: a `tower::Service` that hands requests straight to
//! [`ApiServer::handle`] as a fixed user, so that components running inside `rkube server`
//! (controllers, the scheduler, bootstrap) are ordinary API clients (any HTTP client built on
//! tower, such as `kube::Client`, works over it) without paying for TCP and TLS. Requests
//! still go through authorization, admission and validation like a remote client's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::ApiServer;
use crate::authn::UserInfo;
use crate::response::{self, Response};

/// A tower service answering requests in process.
#[derive(Clone)]
pub struct LocalService {
    srv: Arc<ApiServer>,
    user: UserInfo,
}

impl LocalService {
    /// A service calling `srv` as `user`.
    pub fn new(srv: Arc<ApiServer>, user: UserInfo) -> Self {
        LocalService { srv, user }
    }
}

impl<B> tower::Service<http::Request<B>> for LocalService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let srv = self.srv.clone();
        let user = self.user.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let limited = http_body_util::Limited::new(body, crate::MAX_REQUEST_BYTES);
            let bytes = match limited.collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    return Ok(response::error(&rkube_core::status::ApiError::bad_request(
                        format!("reading request body: {e}"),
                    )));
                }
            };
            Ok(srv
                .handle(http::Request::from_parts(parts, bytes), user)
                .await)
        })
    }
}
