//! The OTLP/gRPC side: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::{Request, Response, Status};

use crate::store::SpanStore;

/// The gRPC trace service; every export goes straight into the shared store.
pub(crate) struct GrpcTraceService {
    pub(crate) store: SpanStore,
}

#[tonic::async_trait]
impl TraceService for GrpcTraceService {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let refused = self.store.ingest(request.into_inner());
        log::debug!("grpc export stored (refused {refused} spans)");
        Ok(Response::new(export_response(refused)))
    }
}

/// The export response, with a partial success when spans were refused for lack of room
/// (OTLP says the client must not retry those).
pub(crate) fn export_response(refused: u64) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (refused > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: i64::try_from(refused).unwrap_or(i64::MAX),
            error_message: "span store is full".to_owned(),
        }),
    }
}
