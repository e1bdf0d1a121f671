//! Principals, roles and refusals, without a server.

use super::*;
use essaim_telemetry::prometheus_client::registry::Registry;

fn authenticator(cluster_token: Option<&str>, file: &str) -> Authenticator {
    let principals = parse_principals(file).expect("the test file is valid");
    let metrics = AuthMetrics::register(&mut Registry::default(), &[]);
    Authenticator::new(cluster_token, principals, metrics)
}

const FILE: &str = r#"
version = 1

[[principal]]
name = "reader"
token = "read-me"
roles = ["read-only"]

[[principal]]
name = "ci"
# sha256("ci-token")
token_sha256 = "TOKEN_HASH"
roles = ["submit", "commands"]

[[principal]]
name = "dashboard"
certificate = " dashboard.example "
roles = ["read-only"]

[[principal]]
name = "agents"
token = "agent-token"
certificate = "essaim-worker"
roles = ["worker"]
"#;

fn file() -> String {
    let hash: String = sha256("ci-token")
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    FILE.replace("TOKEN_HASH", &hash)
}

#[test]
fn a_principal_may_do_what_its_roles_grant_and_no_more() {
    let auth = authenticator(None, &file());
    let surface = AuthSurface::Grpc;
    let reader = auth
        .authorize(
            surface,
            Credentials::Bearer("read-me"),
            Role::ReadOnly,
            "list",
        )
        .unwrap();
    assert_eq!(reader.name, "reader");
    let refused = auth
        .authorize(
            surface,
            Credentials::Bearer("read-me"),
            Role::Submit,
            "call SubmitJob",
        )
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "principal `reader` lacks the role `submit` needed to call SubmitJob"
    );
    assert_eq!(refused.to_status().code(), tonic::Code::PermissionDenied);
    assert_eq!(refused.http_status(), 403);

    let ci = auth
        .authorize(
            surface,
            Credentials::Bearer("ci-token"),
            Role::Submit,
            "submit",
        )
        .unwrap();
    assert!(ci.may(Role::ReadOnly) && ci.may(Role::Commands));
    assert!(!ci.may(Role::Admin) && !ci.may(Role::Worker));
    assert!(check_may_run_commands(&ci, "job").is_ok());
    let refused = check_may_run_commands(&reader, "ls").unwrap_err();
    assert!(refused.to_string().contains("`commands`"), "{refused}");
}

#[test]
fn unknown_and_missing_tokens_are_unauthenticated() {
    let auth = authenticator(Some("cluster-secret"), &file());
    let unknown = auth
        .authorize(
            AuthSurface::Rest,
            Credentials::Bearer("guess"),
            Role::ReadOnly,
            "read",
        )
        .unwrap_err();
    assert_eq!(unknown, AuthError::UnknownToken);
    assert_eq!(unknown.http_status(), 401);
    let missing = auth
        .authorize(AuthSurface::Rest, Credentials::None, Role::ReadOnly, "read")
        .unwrap_err();
    assert_eq!(missing, AuthError::MissingToken);
    assert_eq!(missing.to_status().code(), tonic::Code::Unauthenticated);
}

#[test]
fn the_cluster_token_keeps_every_role_and_no_credentials_admit_anyone() {
    let auth = authenticator(Some("cluster-secret"), &file());
    for role in Role::ALL {
        let principal = auth
            .authorize(
                AuthSurface::Grpc,
                Credentials::Bearer("cluster-secret"),
                role,
                "x",
            )
            .unwrap();
        assert_eq!(principal.name, CLUSTER_TOKEN_PRINCIPAL);
    }
    let open = authenticator(None, "version = 1\n");
    assert!(!open.requires_credentials());
    let anyone = open
        .authorize(AuthSurface::Grpc, Credentials::None, Role::Admin, "x")
        .unwrap();
    assert_eq!(anyone.name, ANONYMOUS_PRINCIPAL);
}

#[test]
fn refusals_are_counted_by_surface_and_reason() {
    let mut registry = Registry::default();
    let metrics = AuthMetrics::register(&mut registry, &[AuthSurface::Grpc]);
    let auth = Authenticator::new(Some("t"), Vec::new(), metrics);
    let _ = auth.authorize(
        AuthSurface::Grpc,
        Credentials::Bearer("u"),
        Role::ReadOnly,
        "x",
    );
    let _ = auth.authorize(
        AuthSurface::Grpc,
        Credentials::Bearer("u"),
        Role::ReadOnly,
        "x",
    );
    let mut text = String::new();
    essaim_telemetry::prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("essaim_auth_refusals_total{surface=\"grpc\",reason=\"unknown_token\"} 2"),
        "{text}"
    );
}

#[test]
fn a_bad_principals_file_is_refused_naming_what_to_fix() {
    let cases = [
        ("version = 2\n", "version 2 is not supported"),
        (
            "version = 1\n[[principal]]\nname = \"a\"\ntoken = \"t\"\nroles = [\"sudo\"]\n",
            "principal `a`: unknown role `sudo`",
        ),
        (
            "version = 1\n[[principal]]\nname = \"a\"\nroles = [\"admin\"]\n",
            "principal `a` has no `token_sha256` (or `token`) and no `certificate`",
        ),
        (
            "version = 1\n[[principal]]\nname = \"a\"\ncertificate = \" \"\nroles = [\"admin\"]\n",
            "principal `a`: `certificate` is empty",
        ),
        (
            "version = 1\n[[principal]]\nname = \"a\"\ncertificate = \"c\"\nroles = [\"admin\"]\n[[principal]]\nname = \"b\"\ncertificate = \"c\"\nroles = [\"admin\"]\n",
            "principal `b` has the certificate identity `c` of another principal",
        ),
        (
            "version = 1\n[[principal]]\nname = \"a\"\ncertificate = \"c\"\ntoken = \"\"\nroles = [\"admin\"]\n",
            "principal `a`: `token` is empty",
        ),
        (
            "version = 1\n[[principal]]\nname = \"a\"\ntoken_sha256 = \"abc\"\nroles = [\"admin\"]\n",
            "64 hexadecimal digits",
        ),
        (
            "version = 1\n[[principal]]\nname = \"a\"\ntoken = \"t\"\nroles = [\"admin\"]\n[[principal]]\nname = \"b\"\ntoken = \"t\"\nroles = [\"admin\"]\n",
            "principal `b` has the token of another principal",
        ),
        (
            "version = 1\n[[principal]]\nname = \"a\"\ntoken = \"t\"\nrole = [\"admin\"]\n",
            "unknown field `role`",
        ),
        (
            "version = 1\n[[principal]]\nname = \"cluster\"\ntoken = \"t\"\nroles = [\"read-only\"]\n",
            "principal name `cluster` is reserved",
        ),
        (
            "version = 1\n[[principal]]\nname = \" anonymous \"\ntoken = \"t\"\nroles = [\"read-only\"]\n",
            "principal name `anonymous` is reserved",
        ),
    ];
    for (text, expected) in cases {
        let error = parse_principals(text).unwrap_err();
        assert!(error.contains(expected), "{text:?}: {error}");
    }
}

#[test]
fn a_principal_holding_the_cluster_token_is_refused_at_start_and_at_reload() {
    let reuse = parse_principals(
        "version = 1\n[[principal]]\nname = \"ops\"\ntoken = \"cluster-secret\"\nroles = [\"read-only\"]\n",
    )
    .unwrap();
    let refused =
        check_principals_against_cluster_token(&reuse, Some("cluster-secret")).unwrap_err();
    assert!(
        refused.contains("principal `ops` has the cluster token"),
        "{refused}"
    );
    assert!(check_principals_against_cluster_token(&reuse, None).is_ok());

    let auth = authenticator(Some("cluster-secret"), &file());
    assert!(auth.replace_principals(reuse).is_err());
    // The refused file changed nothing.
    let reader = auth.authorize(
        AuthSurface::Grpc,
        Credentials::Bearer("read-me"),
        Role::ReadOnly,
        "x",
    );
    assert_eq!(reader.unwrap().name, "reader");
}

#[test]
fn a_reload_takes_effect_for_every_clone_at_once() {
    let auth = authenticator(None, &file());
    let clone = auth.clone();
    let next = parse_principals(
        "version = 1\n[[principal]]\nname = \"new\"\ntoken = \"fresh\"\nroles = [\"admin\"]\n",
    )
    .unwrap();
    auth.replace_principals(next).unwrap();
    let gone = clone.authorize(
        AuthSurface::Rest,
        Credentials::Bearer("read-me"),
        Role::ReadOnly,
        "x",
    );
    assert_eq!(gone.unwrap_err(), AuthError::UnknownToken);
    let new = clone.authorize(
        AuthSurface::Rest,
        Credentials::Bearer("fresh"),
        Role::Admin,
        "x",
    );
    assert_eq!(new.unwrap().name, "new");
    // Emptied by mistake, the file would open a coordinator without a cluster token to
    // anyone: refused, the principals in force stay.
    let refused = auth.replace_principals(Vec::new()).unwrap_err();
    assert!(refused.contains("no principal"), "{refused}");
    assert!(clone.requires_credentials());
}

#[test]
fn a_principal_is_known_by_a_token_a_certificate_or_both() {
    let principals = parse_principals(&file()).unwrap();
    let by_name = |name: &str| principals.iter().find(|spec| spec.name == name).unwrap();
    assert_eq!(by_name("reader").certificate, None);
    assert_eq!(by_name("reader").token_sha256, Some(sha256("read-me")));
    let dashboard = by_name("dashboard");
    assert_eq!(dashboard.certificate.as_deref(), Some("dashboard.example"));
    assert_eq!(dashboard.token_sha256, None);
    let agents = by_name("agents");
    assert_eq!(agents.certificate.as_deref(), Some("essaim-worker"));
    assert_eq!(agents.token_sha256, Some(sha256("agent-token")));
}

#[test]
fn a_client_certificate_without_a_token_names_the_principal_of_its_common_name() {
    let auth = authenticator(Some("cluster-secret"), &file());
    let dashboard = ClientCertificate::with_common_name("dashboard.example");
    let as_dashboard = Credentials::presented(None, Some(&dashboard));
    let reader = auth
        .authorize(
            AuthSurface::Rest,
            as_dashboard,
            Role::ReadOnly,
            "GET /api/v1/jobs",
        )
        .unwrap();
    assert_eq!(reader.name, "dashboard");
    let refused = auth
        .authorize(
            AuthSurface::Rest,
            as_dashboard,
            Role::Submit,
            "POST /api/v1/jobs",
        )
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "principal `dashboard` lacks the role `submit` needed to POST /api/v1/jobs"
    );
    assert_eq!(refused.http_status(), 403);
    // A principal with both is the same whichever it shows.
    let worker = ClientCertificate::with_common_name("essaim-worker");
    let by_certificate = auth
        .authorize(
            AuthSurface::Grpc,
            Credentials::presented(None, Some(&worker)),
            Role::Worker,
            "call PullTasks",
        )
        .unwrap();
    let by_token = auth
        .authorize(
            AuthSurface::Grpc,
            Credentials::Bearer("agent-token"),
            Role::Worker,
            "x",
        )
        .unwrap();
    assert_eq!(by_certificate, by_token);
    assert_eq!(by_certificate.name, "agents");
}

#[test]
fn a_bearer_token_decides_even_beside_a_known_certificate() {
    let auth = authenticator(Some("cluster-secret"), &file());
    let worker = ClientCertificate::with_common_name("essaim-worker");
    let as_reader = Credentials::presented(Some("read-me"), Some(&worker));
    let reader = auth
        .authorize(AuthSurface::Grpc, as_reader, Role::ReadOnly, "x")
        .unwrap();
    assert_eq!(reader.name, "reader");
    // A wrong token is refused, not saved by the certificate.
    let wrong = Credentials::presented(Some("guess"), Some(&worker));
    let refused = auth.authorize(AuthSurface::Grpc, wrong, Role::ReadOnly, "x");
    assert_eq!(refused.unwrap_err(), AuthError::UnknownToken);
}

#[test]
fn a_certificate_naming_no_principal_is_unauthenticated_naming_what_it_carries() {
    let mut registry = Registry::default();
    let metrics = AuthMetrics::register(&mut registry, &[AuthSurface::Grpc]);
    let auth = Authenticator::new(None, parse_principals(&file()).unwrap(), metrics);
    let stranger = ClientCertificate::with_common_name("mallory");
    let refused = auth
        .authorize(
            AuthSurface::Grpc,
            Credentials::presented(None, Some(&stranger)),
            Role::ReadOnly,
            "x",
        )
        .unwrap_err();
    assert_eq!(refused.to_status().code(), tonic::Code::Unauthenticated);
    assert_eq!(refused.http_status(), 401);
    let message = refused.to_string();
    assert!(
        message.contains("`CN=mallory` names no principal"),
        "{message}"
    );
    assert!(message.contains("certificate = \"mallory\""), "{message}");
    // A principal's name is not its certificate identity.
    let named_like_a_principal = ClientCertificate::with_common_name("reader");
    let refused = auth.authorize(
        AuthSurface::Grpc,
        Credentials::presented(None, Some(&named_like_a_principal)),
        Role::ReadOnly,
        "x",
    );
    assert!(matches!(refused, Err(AuthError::UnknownCertificate { .. })));
    let unnamed = ClientCertificate::from_der(b"not a certificate");
    let refused = auth
        .authorize(
            AuthSurface::Grpc,
            Credentials::presented(None, Some(&unnamed)),
            Role::ReadOnly,
            "x",
        )
        .unwrap_err();
    assert_eq!(refused, AuthError::UnnamedCertificate);
    let mut text = String::new();
    essaim_telemetry::prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(
            "essaim_auth_refusals_total{surface=\"grpc\",reason=\"unknown_certificate\"} 3"
        ),
        "{text}"
    );
}
