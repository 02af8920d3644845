//! AWS clients for tests, all aimed at the emulator: an admin in any test account (by assuming
//! a role there), and a person's own credentials with an MFA session, as in the article's
//! `aws sts get-session-token --serial-number ... --token-code ...`.

use anyhow::Context as _;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use hmac::{Hmac, Mac};

/// Region of the seed scenario (the article's `ap-northeast-1`).
pub const REGION: &str = "ap-northeast-1";

/// Credentials the emulator treats as the operator's own bootstrap identity.
pub const BOOTSTRAP_KEY: &str = "AKIAPRODACCESSTEST01";
pub const BOOTSTRAP_SECRET: &str = "prodaccess-bootstrap-secret";

/// An SDK config for the emulator with the given credentials.
pub async fn config(endpoint: &str, credentials: Credentials) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(credentials)
        .load()
        .await
}

/// Admin access to one test account: assume `role/prodaccess` there with the bootstrap keys.
pub async fn admin(endpoint: &str, account_id: &str) -> crate::Result<SdkConfig> {
    let bootstrap = Credentials::new(BOOTSTRAP_KEY, BOOTSTRAP_SECRET, None, None, "bootstrap");
    let base = config(endpoint, bootstrap).await;
    let sts = aws_sdk_sts::Client::new(&base);
    let out = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account_id}:role/prodaccess"))
        .role_session_name("e2e-admin")
        .send()
        .await
        .context("assume the test admin role")?;
    let creds = out
        .credentials()
        .context("AssumeRole returned no credentials")?;
    let credentials = Credentials::new(
        creds.access_key_id(),
        creds.secret_access_key(),
        Some(creds.session_token().to_string()),
        None,
        "e2e-admin",
    );
    Ok(config(endpoint, credentials).await)
}

/// An IAM user with an access key and an enabled virtual MFA device.
#[derive(Clone, Debug)]
pub struct Person {
    pub name: String,
    pub arn: String,
    pub access_key: String,
    pub secret: String,
    pub mfa_serial: String,
    pub mfa_seed: Vec<u8>,
}

/// Creates `name` with an access key and a virtual MFA device.
pub async fn create_person(admin: &SdkConfig, name: &str) -> crate::Result<Person> {
    let iam = aws_sdk_iam::Client::new(admin);
    let user = iam
        .create_user()
        .user_name(name)
        .send()
        .await
        .context("create user")?;
    let arn = user.user().map(|u| u.arn().to_string()).unwrap_or_default();
    let key = iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .context("create access key")?;
    let key = key.access_key().context("no access key")?;
    let device = iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name(name)
        .send()
        .await?;
    let device = device.virtual_mfa_device().context("no MFA device")?;
    let serial = device.serial_number().to_string();
    let seed_text = device
        .base32_string_seed()
        .map(|b| b.as_ref().to_vec())
        .unwrap_or_default();
    let seed =
        base32_decode(&String::from_utf8_lossy(&seed_text)).context("MFA seed is not base32")?;
    let now = now_secs();
    iam.enable_mfa_device()
        .user_name(name)
        .serial_number(&serial)
        .authentication_code1(totp(&seed, now / 30 - 1))
        .authentication_code2(totp(&seed, now / 30))
        .send()
        .await
        .context("enable MFA device")?;
    Ok(Person {
        name: name.to_string(),
        arn,
        access_key: key.access_key_id().to_string(),
        secret: key.secret_access_key().to_string(),
        mfa_serial: serial,
        mfa_seed: seed,
    })
}

impl Person {
    /// Long-term key credentials.
    pub async fn config(&self, endpoint: &str) -> SdkConfig {
        let creds = Credentials::new(&self.access_key, &self.secret, None, None, "person");
        config(endpoint, creds).await
    }

    /// `aws sts get-session-token --serial-number ... --token-code ...`: MFA-present credentials.
    pub async fn mfa_session(&self, endpoint: &str) -> crate::Result<SdkConfig> {
        let sts = aws_sdk_sts::Client::new(&self.config(endpoint).await);
        let out = sts
            .get_session_token()
            .serial_number(&self.mfa_serial)
            .token_code(totp(&self.mfa_seed, now_secs() / 30))
            .send()
            .await
            .context("get-session-token with MFA")?;
        let c = out.credentials().context("no session credentials")?;
        let creds = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            None,
            "mfa-session",
        );
        Ok(config(endpoint, creds).await)
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// RFC 6238 TOTP (SHA-1, 6 digits) for time step `step`.
pub fn totp(seed: &[u8], step: u64) -> String {
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(seed) else {
        return String::new();
    };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let code = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", code % 1_000_000)
}

/// RFC 4648 base32 without padding requirements.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits: u64 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for ch in text.trim_end_matches('=').chars() {
        let value = match ch {
            'A'..='Z' => ch as u64 - 'A' as u64,
            'a'..='z' => ch as u64 - 'a' as u64,
            '2'..='7' => ch as u64 - '2' as u64 + 26,
            _ => return None,
        };
        bits = (bits << 5) | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_rfc_6238_sha1_vector() {
        // RFC 6238 appendix B: seed "12345678901234567890", T = 59 s -> 94287082 (8 digits).
        let code = totp(b"12345678901234567890", 59 / 30);
        assert_eq!(code, "287082");
        assert_eq!(base32_decode("GEZDGNBV"), Some(b"12345".to_vec()));
    }
}
