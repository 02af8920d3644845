//! Names, ownership tags and client tokens of the AWS resources one route owns.
//!
//! Load balancer and target group names must be at most 32 characters of letters, digits and
//! hyphens, and unique per account and region. A route's names are `pa-` plus a hash of its
//! namespace, name and UID plus a role suffix, so two routes never share a name, even with the
//! same name in different namespaces, and a recreated route never adopts its predecessor's
//! leftovers. The tags are what observe looks resources up by.

/// Tag naming the operator that manages a resource.
pub const MANAGED_BY_TAG: &str = "prodaccess.io/managed-by";
/// Value of [`MANAGED_BY_TAG`].
pub const MANAGED_BY: &str = "prodaccess-operator";
/// Tag carrying the route's namespace.
pub const NAMESPACE_TAG: &str = "prodaccess.io/route-namespace";
/// Tag carrying the route's name.
pub const NAME_TAG: &str = "prodaccess.io/route-name";
/// Tag carrying the route's UID: the one lookups filter on.
pub const UID_TAG: &str = "prodaccess.io/route-uid";

/// Everything that identifies one route's resources in AWS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteNames {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    hash: String,
}

impl RouteNames {
    pub fn new(namespace: &str, name: &str, uid: &str) -> Self {
        let digest = fnv1a(&format!("{namespace}/{name}/{uid}"));
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: uid.to_string(),
            hash: format!("{digest:016x}"),
        }
    }

    fn named(&self, role: &str) -> String {
        format!("pa-{}-{role}", self.hash)
    }

    /// Target group of type `instance` with the production instances.
    pub fn instance_target_group(&self) -> String {
        self.named("itg")
    }

    /// The internal ALB.
    pub fn alb(&self) -> String {
        self.named("alb")
    }

    /// Target group of type `alb` behind the NLB.
    pub fn alb_target_group(&self) -> String {
        self.named("atg")
    }

    /// The internal NLB.
    pub fn nlb(&self) -> String {
        self.named("nlb")
    }

    /// Idempotency token of an EC2 create call for one hop. EC2 allows 64 ASCII characters.
    pub fn client_token(&self, hop: &str) -> String {
        let mut token = format!("{}-{hop}", self.uid);
        token.truncate(64);
        token
    }

    /// Caller reference of a hosted zone the route creates; Route 53 refuses a second zone
    /// with the same reference, which makes the create idempotent.
    pub fn zone_caller_reference(&self) -> String {
        self.client_token("zone")
    }

    /// The ownership tags every created resource carries, as key/value pairs.
    pub fn tags(&self) -> Vec<(&'static str, String)> {
        vec![
            (MANAGED_BY_TAG, MANAGED_BY.to_string()),
            (NAMESPACE_TAG, self.namespace.clone()),
            (NAME_TAG, self.name.clone()),
            (UID_TAG, self.uid.clone()),
        ]
    }

    /// Whether a resource's tags say it belongs to this route.
    pub fn owns<'a>(&self, mut tags: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        tags.any(|(key, value)| key == UID_TAG && value == self.uid)
    }
}

/// 64-bit FNV-1a: tiny, and unlike `std`'s hasher stable across Rust releases, which names
/// stored in AWS need.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_elb_name(name: &str) -> bool {
        name.len() <= 32
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-')
    }

    #[test]
    fn names_fit_elb_limits() {
        let long = "x".repeat(253);
        let names = RouteNames::new(&long, &long, "0b6b4c1e-7d1a-4b7e-9b53-8c1f4f2b9c11");
        for name in [
            names.instance_target_group(),
            names.alb(),
            names.alb_target_group(),
            names.nlb(),
        ] {
            assert!(valid_elb_name(&name), "{name}");
        }
        assert!(names.client_token("endpoint-service").len() <= 64);
    }

    #[test]
    fn names_differ_across_namespaces_and_uids() {
        let a = RouteNames::new("team-a", "admin", "uid-1");
        let b = RouteNames::new("team-b", "admin", "uid-1");
        let c = RouteNames::new("team-a", "admin", "uid-2");
        assert_ne!(a.alb(), b.alb());
        assert_ne!(a.alb(), c.alb());
        assert_eq!(a.alb(), RouteNames::new("team-a", "admin", "uid-1").alb());
    }

    #[test]
    fn ownership_is_decided_by_the_uid_tag() {
        let names = RouteNames::new("ns", "r", "uid-1");
        assert!(names.owns([(UID_TAG, "uid-1"), (NAME_TAG, "r")].into_iter()));
        assert!(!names.owns([(UID_TAG, "uid-2")].into_iter()));
        assert_eq!(names.tags().len(), 4);
    }
}
