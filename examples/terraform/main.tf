# A private subnet with no route to the internet, reachable with
# `ssh i-…` / `ssh bastion.ssm` through ssm-proxy:
#
#   - the three interface VPC endpoints Session Manager needs (ssm,
#     ssmmessages, ec2messages) with private DNS, so the agent finds them
#     under their usual names;
#   - a security group on the endpoints that admits HTTPS (443) from the
#     instances, and instances whose only egress is HTTPS to the endpoints;
#   - an instance profile with AmazonSSMManagedInstanceCore.
#
#   terraform init && terraform apply
#   ssm-proxy doctor "$(terraform output -raw instance_id)"
#   ssh ec2-user@bastion.ssm

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "name" {
  description = "Name tag of the instance: ssh NAME.ssm reaches it."
  type        = string
  default     = "bastion"
}

variable "vpc_cidr" {
  type    = string
  default = "10.42.0.0/16"
}

provider "aws" {
  region = var.region
}

data "aws_availability_zones" "available" {
  state = "available"
}

resource "aws_vpc" "this" {
  cidr_block = var.vpc_cidr
  # Both are required for the endpoints' private DNS names.
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = "${var.name}-vpc" }
}

resource "aws_subnet" "private" {
  vpc_id            = aws_vpc.this.id
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 1)
  availability_zone = data.aws_availability_zones.available.names[0]
  tags              = { Name = "${var.name}-private" }
}

# No internet gateway, no NAT: the route table only knows the VPC.
resource "aws_route_table" "private" {
  vpc_id = aws_vpc.this.id
  tags   = { Name = "${var.name}-private" }
}

resource "aws_route_table_association" "private" {
  subnet_id      = aws_subnet.private.id
  route_table_id = aws_route_table.private.id
}

resource "aws_security_group" "endpoints" {
  name        = "${var.name}-ssm-endpoints"
  description = "HTTPS from the instances to the Session Manager endpoints"
  vpc_id      = aws_vpc.this.id

  ingress {
    description     = "HTTPS from instances"
    from_port       = 443
    to_port         = 443
    protocol        = "tcp"
    security_groups = [aws_security_group.instance.id]
  }
}

resource "aws_security_group" "instance" {
  name        = "${var.name}-instance"
  description = "No inbound at all; HTTPS out to the VPC (the endpoints)"
  vpc_id      = aws_vpc.this.id

  egress {
    description = "HTTPS to the interface endpoints"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }
}

# The three endpoints the SSM agent uses: ssm (registration, API),
# ec2messages (the agent's control channel) and ssmmessages (the session
# data channel that ssm-proxy's websocket is relayed through).
resource "aws_vpc_endpoint" "ssm" {
  for_each = toset(["ssm", "ssmmessages", "ec2messages"])

  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${var.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = [aws_subnet.private.id]
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = true
  tags                = { Name = "${var.name}-${each.key}" }
}

resource "aws_iam_role" "instance" {
  name               = "${var.name}-ssm-instance"
  assume_role_policy = file("${path.module}/../iam/instance-trust-policy.json")
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  role       = aws_iam_role.instance.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "instance" {
  name = "${var.name}-ssm-instance"
  role = aws_iam_role.instance.name
}

# Amazon Linux 2023 ships a current SSM agent (SSH needs >= 2.3.672.0).
data "aws_ssm_parameter" "al2023" {
  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

resource "aws_instance" "this" {
  ami                    = data.aws_ssm_parameter.al2023.value
  instance_type          = "t3.micro"
  subnet_id              = aws_subnet.private.id
  vpc_security_group_ids = [aws_security_group.instance.id]
  iam_instance_profile   = aws_iam_instance_profile.instance.name

  metadata_options {
    http_tokens = "required"
  }

  tags = { Name = var.name }

  # The agent registers once the endpoints resolve.
  depends_on = [aws_vpc_endpoint.ssm]
}

output "instance_id" {
  value = aws_instance.this.id
}

output "ssh" {
  value = "ssh ec2-user@${var.name}.ssm   # or: ssh ec2-user@${aws_instance.this.id}"
}
