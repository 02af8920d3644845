//! The tables `status` and `routes` print: pure functions from the objects (and the current
//! time) to aligned text, so that what a person reads is unit-tested.

use jiff::Timestamp;

use crate::crd::{ConditionExt, GrantPhase, PrivateLinkRoute, ProductionAccessGrant};

/// One line of a table, column by column.
pub type Row = Vec<String>;

/// Columns separated by three spaces, each as wide as its widest cell; no trailing blanks.
pub fn render(header: &[&str], rows: &[Row]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let header: Row = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// A span of time as people read it: `45s`, `119s`, `4m30s`, `12m`, `1h05m`, `2d3h`. Like
/// kubectl's ages, short spans keep their seconds: a two-minute grant that has just started
/// has `119s` left, which `1m` would misstate by half.
pub fn human(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=599 if s % 60 == 0 => format!("{}m", s / 60),
        120..=599 => format!("{}m{}s", s / 60, s % 60),
        600..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// How long a grant still gives access (`Active`), or when it starts (`Scheduled`).
pub fn time_left(grant: &ProductionAccessGrant, now: Timestamp) -> String {
    let Some(status) = &grant.status else {
        return "-".into();
    };
    let Some(window) = &status.window else {
        return "-".into();
    };
    match status.phase {
        GrantPhase::Active => human(window.expiry.0.as_second() - now.as_second()),
        GrantPhase::Scheduled => format!(
            "starts in {}",
            human(window.start.0.as_second() - now.as_second())
        ),
        _ => "-".into(),
    }
}

pub const GRANT_HEADER: [&str; 6] = ["NAME", "PHASE", "USER", "GROUP", "TIME LEFT", "MESSAGE"];

/// One row per grant, sorted by namespace and name; with `namespaces` the first column is the
/// namespace.
pub fn grant_rows(grants: &[ProductionAccessGrant], now: Timestamp, namespaces: bool) -> Vec<Row> {
    let mut sorted: Vec<&ProductionAccessGrant> = grants.iter().collect();
    sorted.sort_by_key(|g| (g.metadata.namespace.clone(), g.metadata.name.clone()));
    sorted
        .into_iter()
        .map(|grant| {
            let status = grant.status.clone().unwrap_or_default();
            let mut row = Vec::new();
            if namespaces {
                row.push(grant.metadata.namespace.clone().unwrap_or_default());
            }
            row.extend([
                grant.metadata.name.clone().unwrap_or_default(),
                status.phase.as_str().to_string(),
                grant.spec.user.clone(),
                grant.spec.access_group.clone(),
                time_left(grant, now),
                status.message.unwrap_or_default(),
            ]);
            row
        })
        .collect()
}

pub const ROUTE_HEADER: [&str; 4] = ["NAME", "URL", "READY", "REASON"];

/// One row per route: its URL once built, and its `Ready` condition.
pub fn route_rows(routes: &[PrivateLinkRoute], namespaces: bool) -> Vec<Row> {
    let mut sorted: Vec<&PrivateLinkRoute> = routes.iter().collect();
    sorted.sort_by_key(|r| (r.metadata.namespace.clone(), r.metadata.name.clone()));
    sorted
        .into_iter()
        .map(|route| {
            let status = route.status.clone().unwrap_or_default();
            let ready = status.conditions.condition("Ready");
            let mut row = Vec::new();
            if namespaces {
                row.push(route.metadata.namespace.clone().unwrap_or_default());
            }
            let url = status.url.clone().unwrap_or_else(|| {
                format!(
                    "(https://{}:{} when ready)",
                    route.spec.host_name, route.spec.port
                )
            });
            row.extend([
                route.metadata.name.clone().unwrap_or_default(),
                url,
                ready.map_or("Unknown".to_string(), |c| c.status.clone()),
                ready.map_or(String::new(), |c| c.reason.clone()),
            ]);
            row
        })
        .collect()
}

/// The header with a NAMESPACE column in front when listing all namespaces.
pub fn header<'a>(columns: &[&'a str], namespaces: bool) -> Vec<&'a str> {
    let mut out = Vec::new();
    if namespaces {
        out.push("NAMESPACE");
    }
    out.extend_from_slice(columns);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{GrantWindow, ProductionAccessGrantSpec, ProductionAccessGrantStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn grant(
        ns: &str,
        name: &str,
        phase: GrantPhase,
        start: i64,
        end: i64,
    ) -> ProductionAccessGrant {
        let mut grant = ProductionAccessGrant::new(
            name,
            ProductionAccessGrantSpec {
                access_group: "production-access".into(),
                user: "alice".into(),
                duration: Some("1h".into()),
                not_before: None,
                reason: "release check".into(),
                approval: None,
                revoked: false,
            },
        );
        grant.metadata.namespace = Some(ns.into());
        grant.status = Some(ProductionAccessGrantStatus {
            phase,
            message: Some(format!("{} message", phase.as_str())),
            window: Some(GrantWindow {
                start: Time(at(start)),
                expiry: Time(at(end)),
            }),
            ..Default::default()
        });
        grant
    }

    #[test]
    fn time_left_counts_down_to_expiry_or_up_to_the_start() {
        let now = at(10_000);
        let active = grant("a", "g", GrantPhase::Active, 9_000, 10_000 + 3_900);
        assert_eq!(time_left(&active, now), "1h05m");
        let scheduled = grant("a", "g", GrantPhase::Scheduled, 10_120, 13_720);
        assert_eq!(time_left(&scheduled, now), "starts in 2m");
        let expired = grant("a", "g", GrantPhase::Expired, 1, 2);
        assert_eq!(time_left(&expired, now), "-");
        assert_eq!(human(-5), "0s");
        assert_eq!(human(59), "59s");
        assert_eq!(human(119), "119s");
        assert_eq!(human(270), "4m30s");
        assert_eq!(human(300), "5m");
        assert_eq!(human(719), "11m");
        assert_eq!(human(90_000), "1d1h");
    }

    #[test]
    fn grants_are_sorted_and_aligned_with_a_namespace_column_for_all_namespaces() {
        let now = at(10_000);
        let grants = vec![
            grant("team-b", "zeta", GrantPhase::Active, 9_000, 10_600),
            grant("team-a", "alpha", GrantPhase::AwaitingApproval, 0, 0),
        ];
        let rows = grant_rows(&grants, now, true);
        let text = render(&header(&GRANT_HEADER, true), &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAMESPACE   NAME    PHASE"), "{text}");
        assert!(
            lines[1].starts_with("team-a      alpha   AwaitingApproval"),
            "{text}"
        );
        assert!(lines[2].contains("   10m "), "{text}");
        let column = lines[0].find("MESSAGE");
        assert_eq!(lines[2].find("Active message"), column, "{text}");
        let rows = grant_rows(&grants, now, false);
        assert_eq!(rows[0][0], "alpha");
    }

    #[test]
    fn routes_show_the_url_once_ready_and_the_ready_condition() {
        let route = |name: &str, ready: Option<&str>| -> PrivateLinkRoute {
            let mut value = serde_json::json!({
                "apiVersion": "prodaccess.io/v1alpha1",
                "kind": "PrivateLinkRoute",
                "metadata": {"name": name, "namespace": "team-a"},
                "spec": {
                    "hostName": "admin.prod.example.com", "port": 10443,
                    "provider": {
                        "accountRef": "production", "vpcId": "vpc-0123456789abcdef0",
                        "nlbSubnetIds": ["subnet-00000001"],
                        "albSubnetIds": ["subnet-00000001", "subnet-00000002"],
                        "albSecurityGroupIds": ["sg-00000001"],
                        "certificateArn": "arn:aws:acm:ap-northeast-1:222222222222:certificate/x",
                        "targets": {"port": 443, "instanceIds": ["i-00000001"]}
                    },
                    "consumer": {
                        "accountRef": "jump", "vpcId": "vpc-00000002",
                        "subnetIds": ["subnet-00000003"], "securityGroupIds": ["sg-00000002"],
                        "hostedZone": {"zoneName": "prod.example.com"}
                    }
                }
            });
            if let Some(reason) = ready {
                value["status"] = serde_json::json!({
                    "url": "https://admin.prod.example.com:10443",
                    "conditions": [{"type": "Ready", "status": "True", "reason": reason,
                        "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
                });
            }
            serde_json::from_value(value).unwrap_or_else(|err| unreachable!("route: {err}"))
        };
        let rows = route_rows(&[route("b", None), route("a", Some("AllHopsReady"))], false);
        assert_eq!(
            rows[0],
            vec![
                "a",
                "https://admin.prod.example.com:10443",
                "True",
                "AllHopsReady"
            ]
        );
        assert_eq!(
            rows[1][1],
            "(https://admin.prod.example.com:10443 when ready)"
        );
        assert_eq!(rows[1][2], "Unknown");
    }
}
