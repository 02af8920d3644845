//! The commands a person runs once a grant is active: the article's Session Manager
//! port-forwarding session to the Windows jump host, preceded by an MFA session token when the
//! group's policy requires MFA. Pure: built from the `AccessGroup`'s session policy.

use crate::crd::SessionPolicy;

/// Session Manager document for port forwarding, the one the article uses.
pub const PORT_FORWARDING_DOCUMENT: &str = "AWS-StartPortForwardingSession";

/// Ports of the forwarded connection: RDP on the jump host, a local port for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub remote: u16,
    pub local: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            remote: 3389,
            local: 11111,
        }
    }
}

/// What to print when access starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instructions {
    /// `aws sts get-session-token ...`, when sessions need MFA.
    pub mfa_command: Option<String>,
    /// `aws ssm start-session ...`.
    pub session_command: String,
    /// Jump hosts besides the one in the command, if the group lists several.
    pub other_jump_hosts: Vec<String>,
    /// Set when the command holds a placeholder the user must fill in, with why.
    pub note: Option<String>,
}

/// The instructions for a group with this session policy; `None` when the group could not be
/// read (the user may lack permission to read access groups), which gives placeholders.
/// `region` is the jump account's, when the user may read its `AwsAccount`: the session must
/// be started there, whatever the user's CLI profile defaults to.
pub fn instructions(
    policy: Option<&SessionPolicy>,
    region: Option<&str>,
    ports: Ports,
) -> Instructions {
    let hosts = policy
        .map(|p| p.jump_host_instance_ids.clone())
        .unwrap_or_default();
    let (target, note) = match hosts.first() {
        Some(id) => (id.clone(), None),
        None => (
            "<jump host instance id>".to_string(),
            Some(missing_host_note(policy)),
        ),
    };
    let document = policy
        .and_then(|p| {
            let port_forwarding = p.documents.iter().find(|d| *d == PORT_FORWARDING_DOCUMENT);
            port_forwarding.or(p.documents.first()).cloned()
        })
        .unwrap_or_else(|| PORT_FORWARDING_DOCUMENT.to_string());
    let mut session_command = format!(
        "aws ssm start-session --target {target} --document-name {document} \
         --parameters portNumber={},localPortNumber={}",
        ports.remote, ports.local
    );
    if let Some(region) = region {
        session_command.push_str(&format!(" --region {region}"));
    }
    // Without the group, assume the safe default: MFA required.
    let mfa = policy.is_none_or(|p| p.require_mfa);
    let mfa_command = mfa.then(|| {
        "aws sts get-session-token --serial-number <your MFA device ARN> \
         --token-code <code from your MFA device>"
            .to_string()
    });
    Instructions {
        mfa_command,
        session_command,
        other_jump_hosts: hosts.into_iter().skip(1).collect(),
        note,
    }
}

fn missing_host_note(policy: Option<&SessionPolicy>) -> String {
    match policy {
        None => "the access group could not be read; ask its owner for the jump host".into(),
        Some(p) if !p.jump_host_tags.is_empty() => {
            let tags: Vec<String> = p
                .jump_host_tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("jump hosts are the instances tagged {}", tags.join(", "))
        }
        Some(_) => "the access group names no jump host; ask its owner which to use".into(),
    }
}

impl Instructions {
    /// The lines to print, in the order to follow them.
    pub fn lines(&self, ports: Ports) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(mfa) = &self.mfa_command {
            out.push("The group requires MFA. Get session credentials first:".to_string());
            out.push(format!("  {mfa}"));
            out.push(
                "  and export AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN \
                 from its output."
                    .to_string(),
            );
        }
        out.push("Start the port-forwarding session to the jump host:".to_string());
        out.push(format!("  {}", self.session_command));
        if let Some(note) = &self.note {
            out.push(format!("  ({note})"));
        }
        if !self.other_jump_hosts.is_empty() {
            out.push(format!(
                "  (other jump hosts: {})",
                self.other_jump_hosts.join(", ")
            ));
        }
        out.push(format!(
            "Then connect your RDP client to localhost:{}.",
            ports.local
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article_policy() -> SessionPolicy {
        SessionPolicy {
            jump_host_instance_ids: vec!["i-0123456789abcdef0".into()],
            documents: vec![PORT_FORWARDING_DOCUMENT.into()],
            require_mfa: true,
            ..SessionPolicy::default()
        }
    }

    #[test]
    fn prints_the_articles_exact_command_and_the_mfa_step() {
        let out = instructions(Some(&article_policy()), None, Ports::default());
        assert_eq!(
            out.session_command,
            "aws ssm start-session --target i-0123456789abcdef0 --document-name \
             AWS-StartPortForwardingSession --parameters portNumber=3389,localPortNumber=11111"
        );
        let mfa = out.mfa_command.clone().unwrap_or_default();
        assert!(mfa.starts_with("aws sts get-session-token --serial-number "));
        assert_eq!(out.note, None);
        let lines = out.lines(Ports::default());
        let session_at = lines.iter().position(|l| l.contains("start-session"));
        let mfa_at = lines.iter().position(|l| l.contains("get-session-token"));
        assert!(mfa_at < session_at, "MFA comes first: {lines:?}");
    }

    #[test]
    fn the_jump_accounts_region_is_named_when_known() {
        let out = instructions(
            Some(&article_policy()),
            Some("ap-northeast-1"),
            Ports::default(),
        );
        assert!(
            out.session_command
                .ends_with("localPortNumber=11111 --region ap-northeast-1"),
            "{}",
            out.session_command
        );
    }

    #[test]
    fn no_mfa_step_when_the_group_does_not_require_it() {
        let policy = SessionPolicy {
            require_mfa: false,
            ..article_policy()
        };
        let out = instructions(Some(&policy), None, Ports::default());
        assert_eq!(out.mfa_command, None);
        assert!(!out.lines(Ports::default()).join("\n").contains("MFA"));
    }

    #[test]
    fn first_jump_host_is_the_target_and_the_others_are_listed() {
        let policy = SessionPolicy {
            jump_host_instance_ids: vec![
                "i-0000000000000000a".into(),
                "i-0000000000000000b".into(),
            ],
            ..article_policy()
        };
        let ports = Ports {
            remote: 3389,
            local: 13389,
        };
        let out = instructions(Some(&policy), None, ports);
        assert!(out
            .session_command
            .contains("--target i-0000000000000000a "));
        assert!(out.session_command.ends_with("localPortNumber=13389"));
        assert_eq!(out.other_jump_hosts, vec!["i-0000000000000000b"]);
    }

    #[test]
    fn placeholders_and_a_note_when_the_jump_host_is_unknown() {
        let out = instructions(None, None, Ports::default());
        assert!(out
            .session_command
            .contains("--target <jump host instance id> "));
        assert!(out.session_command.contains(PORT_FORWARDING_DOCUMENT));
        assert!(out.mfa_command.is_some());
        assert!(out.note.is_some());
        let mut tagged = article_policy();
        tagged.jump_host_instance_ids.clear();
        tagged
            .jump_host_tags
            .insert("role".into(), "jump-host".into());
        let out = instructions(Some(&tagged), None, Ports::default());
        assert_eq!(
            out.note.as_deref(),
            Some("jump hosts are the instances tagged role=jump-host")
        );
    }
}
