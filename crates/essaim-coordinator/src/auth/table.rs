//! The one table of who may call what: the role every gRPC method and REST route needs.
//!
//! A method missing from the table needs `admin`, so that a new call is closed until
//! someone decides who may make it (and the unit test below fails when a method of the
//! `.proto` file has no row).

use super::Role;
use axum::http::Method;

/// The role each method of `essaim.v1.Coordinator` needs.
const GRPC_METHOD_ROLES: &[(&str, Role)] = &[
    // A worker's own calls.
    ("RegisterWorker", Role::Worker),
    ("Heartbeat", Role::Worker),
    ("PullTasks", Role::Worker),
    ("ReportResults", Role::Worker),
    ("WatchInputs", Role::Worker),
    ("DeregisterWorker", Role::Worker),
    // Changes to jobs.
    ("SubmitJob", Role::Submit),
    ("PlanAndSubmit", Role::Submit),
    ("CancelJob", Role::Submit),
    // Reads.
    ("GetJob", Role::ReadOnly),
    ("ListJobs", Role::ReadOnly),
    ("WaitJob", Role::ReadOnly),
    ("GetResults", Role::ReadOnly),
    ("ListWorkers", Role::ReadOnly),
    ("ListDeadLetters", Role::ReadOnly),
    // The operator's repairs.
    ("RequeueDeadLetters", Role::Admin),
    ("PurgeDeadLetters", Role::Admin),
];

/// The gRPC service whose methods the table lists.
const GRPC_SERVICE_PREFIX: &str = "/essaim.v1.Coordinator/";

/// Returns the role the gRPC call at `path` (`/essaim.v1.Coordinator/SubmitJob`) needs,
/// and the method's name for messages.
pub fn grpc_method_role(path: &str) -> (Role, &str) {
    let method = path.strip_prefix(GRPC_SERVICE_PREFIX).unwrap_or(path);
    let role = GRPC_METHOD_ROLES
        .iter()
        .find(|(name, _)| *name == method)
        .map_or(Role::Admin, |(_, role)| *role);
    (role, method)
}

/// The role each REST write needs, by method and route (as declared in the router, a
/// `{name}` segment matching any one segment). Every `GET` is a read and needs
/// `read-only`.
const REST_WRITE_ROLES: &[(&str, &str, Role)] = &[
    ("POST", "/api/v1/jobs", Role::Submit),
    ("POST", "/api/v1/jobs/{job_id}/cancel", Role::Submit),
    ("POST", "/api/v1/dead-letters/requeue", Role::Admin),
    ("POST", "/api/v1/dead-letters/purge", Role::Admin),
    // A runner's heartbeat to the model registry: what it serves now. A runner is a
    // serving worker; a canary's decisions need `submit` besides.
    ("PUT", "/registry/v1/usage/{runner}", Role::Worker),
    ("DELETE", "/registry/v1/usage/{runner}", Role::Worker),
];

/// Writes of the model registry (`/registry/v1/…`): registering a model or an artifact
/// is a submission of work, not an operator's repair.
const REGISTRY_PREFIX: &str = "/registry/v1/";

/// Returns the role the REST call `method` on `path` needs.
pub fn rest_route_role(method: &Method, path: &str) -> Role {
    if method == Method::GET || method == Method::HEAD {
        return Role::ReadOnly;
    }
    let listed = REST_WRITE_ROLES.iter().find(|(listed_method, route, _)| {
        method.as_str() == *listed_method && route_matches(route, path)
    });
    if let Some((_, _, role)) = listed {
        return *role;
    }
    if path.starts_with(REGISTRY_PREFIX) {
        return Role::Submit;
    }
    Role::Admin
}

/// Returns whether `path` is an instance of `route`, whose `{name}` segments match any
/// one non-empty segment.
fn route_matches(route: &str, path: &str) -> bool {
    let mut route_segments = route.split('/');
    let mut path_segments = path.split('/');
    loop {
        match (route_segments.next(), path_segments.next()) {
            (None, None) => return true,
            (Some(expected), Some(given)) => {
                let placeholder = expected.starts_with('{') && expected.ends_with('}');
                let matches = if placeholder {
                    !given.is_empty()
                } else {
                    expected == given
                };
                if !matches {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `rpc` of the wire API has a row, and every row is an `rpc`.
    #[test]
    fn every_grpc_method_of_the_proto_file_has_a_role() {
        let proto = include_str!("../../../../proto/essaim/v1/essaim.proto");
        let methods: Vec<&str> = proto
            .lines()
            .filter_map(|line| line.trim().strip_prefix("rpc "))
            .filter_map(|rest| rest.split('(').next())
            .collect();
        assert_eq!(methods.len(), GRPC_METHOD_ROLES.len(), "{methods:?}");
        for method in methods {
            assert!(
                GRPC_METHOD_ROLES.iter().any(|(name, _)| *name == method),
                "no role for {method}"
            );
        }
    }

    #[test]
    fn reads_need_read_only_and_changes_need_more() {
        assert_eq!(
            grpc_method_role("/essaim.v1.Coordinator/ListJobs"),
            (Role::ReadOnly, "ListJobs")
        );
        assert_eq!(
            grpc_method_role("/essaim.v1.Coordinator/SubmitJob").0,
            Role::Submit
        );
        assert_eq!(
            grpc_method_role("/essaim.v1.Coordinator/PullTasks").0,
            Role::Worker
        );
        assert_eq!(
            grpc_method_role("/essaim.v1.Coordinator/NoSuchCall").0,
            Role::Admin
        );
        assert_eq!(
            rest_route_role(&Method::GET, "/api/v1/jobs"),
            Role::ReadOnly
        );
        assert_eq!(rest_route_role(&Method::POST, "/api/v1/jobs"), Role::Submit);
        assert_eq!(
            rest_route_role(&Method::POST, "/api/v1/dead-letters/purge"),
            Role::Admin
        );
        assert_eq!(
            rest_route_role(&Method::POST, "/registry/v1/models"),
            Role::Submit
        );
        assert_eq!(
            rest_route_role(&Method::POST, "/api/v1/jobs/12/cancel"),
            Role::Submit
        );
        assert_eq!(
            rest_route_role(&Method::PUT, "/registry/v1/usage/runner-1"),
            Role::Worker
        );
        assert_eq!(
            rest_route_role(&Method::DELETE, "/registry/v1/usage/runner-1"),
            Role::Worker
        );
        assert_eq!(
            rest_route_role(&Method::POST, "/api/v1/jobs//cancel"),
            Role::Admin
        );
        assert_eq!(
            rest_route_role(&Method::POST, "/api/v1/jobs/12/cancel/x"),
            Role::Admin
        );
        assert_eq!(
            rest_route_role(&Method::DELETE, "/api/v1/jobs/12"),
            Role::Admin
        );
    }
}
