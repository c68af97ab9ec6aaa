//! OpenAPI links: from an answer that names an execution, definition or schedule to the
//! operations that take its id, so a client generator or a stateful fuzzer can chain
//! execute → status / cancel / retry / events (or a definition's creation → pause → resume)
//! without being told.

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::Modify;

/// Each source operation, where its answer holds the id (a JSON pointer without its leading
/// `/`), and the operations that take that id as their `id` path parameter. The listing of
/// definitions (its first one) lets a client start from what a server registers at start (the
/// bundled server's samples) instead of guessing ids; executions and schedules are reached from
/// their creation, where the id is always there.
const LINKS: &[(&str, &str, &[&str])] = &[
    (
        "listDefinitions",
        "0/id",
        &[
            "getDefinition",
            "listDefinitionVersions",
            "executeJob",
            "pauseDefinition",
            "resumeDefinition",
        ],
    ),
    (
        "executeJob",
        "executionId",
        &[
            "getExecutionStatus",
            "cancelExecution",
            "retryExecution",
            "streamExecutionEvents",
        ],
    ),
    (
        "cancelExecution",
        "executionId",
        &["getExecutionStatus", "retryExecution", "streamExecutionEvents"],
    ),
    (
        "retryExecution",
        "executionId",
        &["getExecutionStatus", "cancelExecution", "streamExecutionEvents"],
    ),
    (
        "getExecutionStatus",
        "id",
        &["cancelExecution", "retryExecution", "streamExecutionEvents"],
    ),
    (
        "createDefinition",
        "id",
        &[
            "getDefinition",
            "listDefinitionVersions",
            "executeJob",
            "pauseDefinition",
            "resumeDefinition",
        ],
    ),
    ("pauseDefinition", "id", &["resumeDefinition", "getDefinition"]),
    ("resumeDefinition", "id", &["pauseDefinition", "getDefinition"]),
    (
        "createSchedule",
        "id",
        &["getSchedule", "pauseSchedule", "resumeSchedule", "deleteSchedule"],
    ),
];

/// Adds [`LINKS`] to every 2xx answer of their source operations, named after the target.
pub(crate) struct Links;

impl Modify for Links {
    fn modify(&self, doc: &mut OpenApi) {
        for (source, field, targets) in LINKS {
            let operation = operation(doc, source).unwrap_or_else(|| panic!("no operation {source}"));
            for (status, response) in &mut operation.responses.responses {
                let RefOr::T(response) = response else { continue };
                if !status.starts_with('2') {
                    continue;
                }
                for target in *targets {
                    let mut link = LinkBuilder::new()
                        .parameter("path.id", format!("$response.body#/{field}"))
                        .description(format!("`/{field}` of this answer is the `id` of {target}"))
                        .build();
                    // utoipa 5 writes `Link::operation_id` as `operation_id`, which no reader
                    // knows: the field goes out under its OpenAPI name through the map that
                    // is written flat into the link.
                    link.extensions = Some([("operationId", *target)].into_iter().collect());
                    response.links.insert((*target).to_string(), link.into());
                }
            }
        }
    }
}

/// The operation whose `operationId` is `id`.
fn operation<'d>(doc: &'d mut OpenApi, id: &str) -> Option<&'d mut Operation> {
    doc.paths.paths.values_mut().find_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .filter_map(Option::as_mut)
        .find(|op| op.operation_id.as_deref() == Some(id))
    })
}
