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

/// The network both accounts start with: in production a VPC with subnets in two zones, the
/// ALB's security group, two instances and a certificate; on the jump side a VPC with one
/// subnet and the endpoint's security group.
#[derive(Clone)]
pub struct Network {
    pub prod_vpc: String,
    pub prod_subnets: Vec<String>,
    pub prod_sg: String,
    pub instances: Vec<String>,
    pub certificate: String,
    pub jump_vpc: String,
    pub jump_subnet: String,
    pub jump_sg: String,
}

/// What a network's resources are called. Names need not be unique across tests (every
/// network has VPCs of its own); they only tell the tests' resources apart when reading the
/// emulator.
pub struct Labels<'a> {
    /// Prefix of the two security groups' names: `{prefix}alb` and `{prefix}endpoint`.
    pub security_groups: &'a str,
    /// Prefix of the two instances' names: `{prefix}-web-1` and `{prefix}-web-2`.
    pub instances: &'a str,
    /// The domain the certificate is for.
    pub certificate_domain: &'a str,
}

impl Network {
    pub async fn create(
        jump: &SdkConfig,
        prod: &SdkConfig,
        labels: &Labels<'_>,
    ) -> anyhow::Result<Network> {
        let (groups, hosts) = (labels.security_groups, labels.instances);
        let ec2 = aws_sdk_ec2::Client::new(prod);
        let prod_vpc = vpc(&ec2, "10.1.0.0/16").await?;
        let prod_subnets = vec![
            subnet(&ec2, &prod_vpc, "10.1.1.0/24", "ap-northeast-1a").await?,
            subnet(&ec2, &prod_vpc, "10.1.2.0/24", "ap-northeast-1c").await?,
        ];
        let prod_sg = security_group(&ec2, &prod_vpc, &format!("{groups}alb")).await?;
        let instances = vec![
            instance(&ec2, &prod_subnets[0], &format!("{hosts}-web-1")).await?,
            instance(&ec2, &prod_subnets[1], &format!("{hosts}-web-2")).await?,
        ];
        let certificate = certificate(prod, labels.certificate_domain).await?;
        let ec2 = aws_sdk_ec2::Client::new(jump);
        let jump_vpc = vpc(&ec2, "10.2.0.0/16").await?;
        let jump_subnet = subnet(&ec2, &jump_vpc, "10.2.1.0/24", "ap-northeast-1a").await?;
        let jump_sg = security_group(&ec2, &jump_vpc, &format!("{groups}endpoint")).await?;
        Ok(Network {
            prod_vpc,
            prod_subnets,
            prod_sg,
            instances,
            certificate,
            jump_vpc,
            jump_subnet,
            jump_sg,
        })
    }

    /// A route's `provider` over this network, in the account that `account_ref` names.
    pub fn route_provider(&self, account_ref: &str) -> serde_json::Value {
        serde_json::json!({
            "accountRef": account_ref,
            "vpcId": self.prod_vpc,
            "nlbSubnetIds": self.prod_subnets,
            "albSubnetIds": self.prod_subnets,
            "albSecurityGroupIds": [self.prod_sg],
            "certificateArn": self.certificate,
            "targets": {"protocol": "HTTPS", "port": 443, "instanceIds": self.instances},
        })
    }

    /// A route's `consumer` over this network, in the account that `account_ref` names: a
    /// CNAME in the private zone `zone_name`.
    pub fn route_consumer(&self, account_ref: &str, zone_name: &str) -> serde_json::Value {
        serde_json::json!({
            "accountRef": account_ref,
            "vpcId": self.jump_vpc,
            "subnetIds": [self.jump_subnet],
            "securityGroupIds": [self.jump_sg],
            "hostedZone": {"zoneName": zone_name},
            "recordType": "CNAME",
        })
    }
}
