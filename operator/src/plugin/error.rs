//! What can go wrong for a person running `kubectl prodaccess`, each said in one line that
//! names what to do next.
//!
//! Kubernetes answers with HTTP codes; [`classify`] sorts a `kube::Error` into the few cases a
//! user can act on, and [`PluginError::from_class`] words them for the action that failed
//! ("you may not create grants in namespace team-a"). A 404 is ambiguous (the object is
//! missing, or the whole API is); the caller settles it with a discovery request first.

/// What the command was doing when the cluster said no: a verb, a plural noun, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub verb: &'static str,
    pub what: &'static str,
    pub scope: Scope,
}

/// Where an action applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespace(String),
    AllNamespaces,
    Cluster,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Namespace(ns) => write!(f, "in namespace {ns}"),
            Self::AllNamespaces => write!(f, "in all namespaces"),
            Self::Cluster => write!(f, "in this cluster"),
        }
    }
}

impl Action {
    pub fn new(verb: &'static str, what: &'static str, scope: Scope) -> Self {
        Self { verb, what, scope }
    }
}

/// The user-facing sort of a failed API request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Class {
    /// No answer at all: connection refused, TLS, DNS, timeout.
    Unreachable(String),
    /// 401: credentials not accepted.
    Unauthorized,
    /// 403: RBAC said no.
    Forbidden,
    /// 404: the object, or the API itself, does not exist.
    NotFound,
    /// Any other refusal, with the API server's message (validation, conflicts).
    Refused(String),
}

/// Sorts a `kube::Error` by what the user can do about it.
pub fn classify(err: &kube::Error) -> Class {
    match err {
        kube::Error::Api(status) => match status.code {
            401 => Class::Unauthorized,
            403 => Class::Forbidden,
            404 => Class::NotFound,
            _ => Class::Refused(one_line(&status.message)),
        },
        other => Class::Unreachable(chain(other)),
    }
}

/// An error and its sources as one line: `a: b: c`.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(next) = source {
        let text = next.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = next.source();
    }
    one_line(&parts.join(": "))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Everything `kubectl prodaccess` reports as `error: ...`.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PluginError {
    #[error("no Kubernetes configuration found (set KUBECONFIG or pass --context): {0}")]
    NoConfig(String),
    #[error("cannot reach the Kubernetes API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the cluster did not accept your credentials; log in again and retry")]
    Unauthorized,
    #[error(
        "the prodaccess CRDs are not installed in this cluster; ask a cluster admin to \
         install them (kubectl apply -f crds/)"
    )]
    CrdsMissing,
    #[error("you may not {verb} {what} {scope}")]
    Forbidden {
        verb: &'static str,
        what: &'static str,
        scope: Scope,
    },
    #[error("{what} {name} not found {scope}")]
    NotFound {
        what: &'static str,
        name: String,
        scope: Scope,
    },
    #[error("the cluster refused to {verb} {what}: {message}")]
    Refused {
        verb: &'static str,
        what: &'static str,
        message: String,
    },
    #[error("{0}")]
    Usage(String),
    #[error("grant {name} ended as {phase}: {message}")]
    Ended {
        name: String,
        phase: &'static str,
        message: String,
    },
    #[error(
        "grant {name} failed: {message} (it stays in place and goes on once this is fixed; \
         kubectl prodaccess status, or delete it)"
    )]
    Failed { name: String, message: String },
    #[error(
        "grant {name} is still {phase} after {waited}; it stays in place \
         (kubectl prodaccess status, or kubectl prodaccess revoke {name})"
    )]
    Timeout {
        name: String,
        phase: &'static str,
        waited: String,
    },
}

impl PluginError {
    /// Words a classified failure of `action` on the object `name` (if it names one). `url`
    /// is the API server's address, for unreachable clusters. A 404 here means the object is
    /// missing: call it only once the API is known to exist.
    pub fn from_class(class: Class, action: &Action, name: Option<&str>, url: &str) -> Self {
        match class {
            Class::Unreachable(reason) => Self::Unreachable {
                url: url.to_string(),
                reason,
            },
            Class::Unauthorized => Self::Unauthorized,
            Class::Forbidden => Self::Forbidden {
                verb: action.verb,
                what: action.what,
                scope: action.scope.clone(),
            },
            Class::NotFound => match name {
                Some(name) => Self::NotFound {
                    what: singular(action.what),
                    name: name.to_string(),
                    scope: action.scope.clone(),
                },
                None => Self::CrdsMissing,
            },
            Class::Refused(message) => Self::Refused {
                verb: action.verb,
                what: action.what,
                message,
            },
        }
    }
}

fn singular(what: &'static str) -> &'static str {
    match what {
        "grants" => "grant",
        "routes" => "route",
        "access groups" => "access group",
        "AWS accounts" => "AWS account",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Status::failure(message, "").with_code(code).boxed())
    }

    fn create_grants() -> Action {
        Action::new("create", "grants", Scope::Namespace("team-a".into()))
    }

    #[test]
    fn forbidden_names_the_verb_and_namespace() {
        let err = PluginError::from_class(
            classify(&api(403, "forbidden")),
            &create_grants(),
            None,
            "https://k",
        );
        assert_eq!(
            err.to_string(),
            "you may not create grants in namespace team-a"
        );
        let list = Action::new("list", "grants", Scope::AllNamespaces);
        let err = PluginError::from_class(Class::Forbidden, &list, None, "");
        assert_eq!(err.to_string(), "you may not list grants in all namespaces");
    }

    #[test]
    fn not_found_is_the_object_when_named_and_the_api_otherwise() {
        let revoke = Action::new("update", "grants", Scope::Namespace("team-a".into()));
        let err = PluginError::from_class(Class::NotFound, &revoke, Some("g1"), "");
        assert_eq!(err.to_string(), "grant g1 not found in namespace team-a");
        let err = PluginError::from_class(Class::NotFound, &create_grants(), None, "");
        assert_eq!(err, PluginError::CrdsMissing);
    }

    #[test]
    fn other_refusals_keep_the_api_message_on_one_line() {
        let class = classify(&api(422, "spec.user: Invalid value:\n  \"a b\""));
        assert_eq!(
            class,
            Class::Refused("spec.user: Invalid value: \"a b\"".into())
        );
        assert_eq!(classify(&api(401, "")), Class::Unauthorized);
    }

    #[test]
    fn transport_failures_are_unreachable_with_their_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = kube::Error::ReadEvents(io);
        let class = classify(&err);
        assert!(
            matches!(&class, Class::Unreachable(reason) if reason.contains("refused")),
            "{class:?}"
        );
        let err = PluginError::from_class(class, &create_grants(), None, "https://127.0.0.1:1");
        assert!(err
            .to_string()
            .starts_with("cannot reach the Kubernetes API at https://127.0.0.1:1: "));
    }
}
