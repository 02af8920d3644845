//! The network the article starts from, built through the AWS APIs: VPCs, subnets in two
//! zones, security groups, instances, and an ACM certificate imported from a self-signed one
//! (imported certificates are `ISSUED` at once). Shared by the route tests and the seed.

use anyhow::Context as _;
use aws_config::SdkConfig;

pub async fn vpc(ec2: &aws_sdk_ec2::Client, cidr: &str) -> anyhow::Result<String> {
    let out = ec2
        .create_vpc()
        .cidr_block(cidr)
        .send()
        .await
        .context("create VPC")?;
    Ok(out
        .vpc()
        .and_then(|v| v.vpc_id())
        .context("no VPC id")?
        .to_string())
}

pub async fn subnet(
    ec2: &aws_sdk_ec2::Client,
    vpc: &str,
    cidr: &str,
    zone: &str,
) -> anyhow::Result<String> {
    let out = ec2
        .create_subnet()
        .vpc_id(vpc)
        .cidr_block(cidr)
        .availability_zone(zone)
        .send()
        .await
        .context("create subnet")?;
    Ok(out
        .subnet()
        .and_then(|s| s.subnet_id())
        .context("no subnet id")?
        .to_string())
}

pub async fn security_group(
    ec2: &aws_sdk_ec2::Client,
    vpc: &str,
    name: &str,
) -> anyhow::Result<String> {
    let out = ec2
        .create_security_group()
        .group_name(name)
        .description(name)
        .vpc_id(vpc)
        .send()
        .await
        .context("create security group")?;
    Ok(out.group_id().context("no group id")?.to_string())
}

/// Runs one instance in `subnet`, tagged `Name=name`.
pub async fn instance(
    ec2: &aws_sdk_ec2::Client,
    subnet: &str,
    name: &str,
) -> anyhow::Result<String> {
    let images = ec2.describe_images().owners("amazon").send().await?;
    let image = images
        .images()
        .first()
        .and_then(|i| i.image_id())
        .context("no AMI")?;
    let out = ec2
        .run_instances()
        .image_id(image)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Medium)
        .subnet_id(subnet)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("Name")
                        .value(name)
                        .build(),
                )
                .build(),
        )
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .context("run instance")?;
    Ok(out
        .instances()
        .first()
        .and_then(|i| i.instance_id())
        .context("no instance")?
        .to_string())
}

/// Imports a fresh self-signed certificate for the host name: imported certificates are
/// `ISSUED` at once.
pub async fn certificate(config: &SdkConfig, host: &str) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("prodaccess-cert-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir)?;
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", &format!("/CN={host}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("run openssl")?;
    anyhow::ensure!(status.success(), "openssl could not make a certificate");
    let blob = |path: &std::path::Path| -> anyhow::Result<aws_sdk_acm::primitives::Blob> {
        Ok(aws_sdk_acm::primitives::Blob::new(std::fs::read(path)?))
    };
    let out = aws_sdk_acm::Client::new(config)
        .import_certificate()
        .certificate(blob(&cert)?)
        .private_key(blob(&key)?)
        .send()
        .await
        .context("import certificate")?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out
        .certificate_arn()
        .context("no certificate ARN")?
        .to_string())
}
