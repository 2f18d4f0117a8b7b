"""Where connectors may deliver (services/egress.py): the address policy and the s3 bucket rule."""

from ipaddress import ip_address

import pytest

from services import egress
from services.settings import SettingsError, WorkerSettings


def settings(**overrides) -> WorkerSettings:
    return WorkerSettings(
        **{
            "database_url": "postgresql://sluice:pw@127.0.0.1:5433/sluice",
            "redis_url": "redis://127.0.0.1:6380/0",
            "aws_endpoint_url": "http://127.0.0.1:5001",
            **overrides,
        }
    )


def refused(address: str, port: int = 443, **overrides) -> bool:
    return egress.refusal(egress.policy(settings(**overrides)), ip_address(address), port) is not None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",  # all of 127/8 is loopback
        "::1",
        "169.254.169.254",  # AWS, GCP and Azure instance metadata
        "169.254.1.1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "fe80::1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",  # shared address space (CGNAT)
        "fc00::1",
        "fd12:3456::1",
        "224.0.0.1",
        "ff02::1",
        "0.0.0.0",
        "::",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",  # documentation
        "::ffff:127.0.0.1",  # IPv4-mapped forms reach the IPv4 host
        "::ffff:169.254.169.254",
        "::ffff:10.1.2.3",
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:a00:1::",  # 6to4 of 10.0.0.1
    ],
)
def test_everything_but_the_public_internet_is_refused(address):
    assert refused(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert not refused(address)


def test_allowed_networks_let_non_public_addresses_through():
    loopback = {"connector_allowed_networks": "127.0.0.0/8, ::1/128"}
    assert not refused("127.0.0.1", 9000, **loopback)
    assert not refused("::ffff:127.0.0.1", 9000, **loopback)
    assert not refused("::1", 9000, **loopback)
    assert refused("10.0.0.1", 9000, **loopback)
    assert not refused("10.9.8.7", 9000, connector_allowed_networks="10.0.0.0/8")


@pytest.mark.parametrize(
    "address, port",
    [
        ("127.0.0.1", 5433),  # SLUICE_DATABASE_URL
        ("127.0.0.1", 6380),  # SLUICE_REDIS_URL
        ("127.0.0.1", 5001),  # SLUICE_AWS_ENDPOINT_URL
        ("127.0.0.1", 8000),  # SLUICE_SERVICE_ENDPOINTS: ingest, control, worker metrics
        ("127.0.0.1", 8001),
        ("127.0.0.1", 9540),
        ("::1", 8001),
        ("10.0.0.7", 5433),  # the database's port on any address the operator allows
        ("169.254.169.254", 80),  # metadata, even inside an allowed network
        ("::ffff:169.254.169.254", 80),
        ("fd00:ec2::254", 80),
    ],
)
def test_the_services_own_endpoints_and_metadata_are_refused_whatever_is_allowed(address, port):
    everything = "0.0.0.0/0, ::/0"
    assert refused(address, port, connector_allowed_networks=everything)


def test_a_service_endpoint_on_a_public_address_is_refused_on_its_port_only():
    public_db = {"database_url": "host=8.8.4.4 port=5432 dbname=db"}
    assert refused("8.8.4.4", 5432, **public_db)
    assert not refused("8.8.4.4", 443, **public_db)
    assert not refused("8.8.8.8", 5432, **public_db)


def test_malformed_network_and_endpoint_settings_fail_at_start_up():
    with pytest.raises(SettingsError, match=r"10\.0\.0\.0/33"):
        settings(connector_allowed_networks="10.0.0.0/33")
    with pytest.raises(SettingsError, match=r"api\.internal"):
        settings(service_endpoints="api.internal")


def test_the_delivery_deadline_must_fit_twice_in_the_lease():
    with pytest.raises(SettingsError, match="SLUICE_PIPELINE_DEADLINE_SECONDS"):
        settings(pipeline_lease_seconds=10, pipeline_deadline_seconds=6)
    assert settings(pipeline_lease_seconds=10, pipeline_deadline_seconds=5)


def test_urls_are_checked_on_their_host_at_creation():
    policy = egress.policy(settings())
    for url in ("http://127.0.0.1:8001/api/1/user", "http://[::1]:6379/", "http://169.254.169.254/latest"):
        assert egress.url_refusal(policy, url, 1.0), url
    assert egress.url_refusal(policy, "https://93.184.216.34/in", 1.0) is None


def test_the_exports_bucket_is_never_a_destination_and_service_credentials_need_an_allowed_bucket():
    s = settings(exports_bucket="sluice-exports", connector_s3_service_buckets="shared-drop, other-drop")
    for authority in ("keys", "role", "service"):
        assert egress.bucket_refusal(s, "sluice-exports", authority)
    assert egress.bucket_refusal(s, "tenant-bucket", "service")
    assert egress.bucket_refusal(s, "shared-drop", "service") is None
    assert egress.bucket_refusal(s, "tenant-bucket", "keys") is None
    assert egress.bucket_refusal(s, "tenant-bucket", "role") is None
