#!/usr/bin/python3
"""Read an IMDS with cloud-init's own Ec2 code.

Usage: cloudinit_client.py [--platform aws|unknown] [--max-wait S]
                           [--retries N] [--debug] URL

Two parts, both run; any failure of either makes the exit status 1:

helpers     cloudinit.sources.helpers.ec2.get_instance_userdata,
            get_instance_metadata (the MetadataMaterializer crawl) and
            get_instance_identity, for api version 2021-03-23. With
            --platform aws (the default) every request carries a session token
            fetched with a PUT through cloudinit.url_helper.readurl, as
            cloud-init does on AWS; with --platform unknown they use IMDSv1.

datasource  cloudinit.sources.DataSourceEc2.DataSourceEc2.get_data() with
            metadata_urls [URL]. The platform is forced to --platform: "aws"
            makes cloud-init use IMDSv2 tokens, "unknown" (a non-AWS EC2
            clone) makes it use IMDSv1 only.

Prints one JSON object on stdout on success, with what cloud-init made of the
metadata. Nothing on this machine is changed: cloud-init's paths point into a
temporary directory, platform detection (DMI, /sys) is not run, and a socket
guard refuses every lookup and connection other than URL's host and port.
"""

import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402

import netguard  # noqa: E402

API_VERSION = "2021-03-23"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"


def text(b):
    if isinstance(b, bytes):
        return b.decode("utf-8", errors="replace")
    return b


def b64(b):
    if isinstance(b, str):
        b = b.encode("utf-8")
    return base64.b64encode(b or b"").decode("ascii")


def run_helpers(url, platform, retries, errors):
    from cloudinit import url_helper
    from cloudinit.sources.helpers import ec2

    headers_cb = None
    token_used = False
    if platform == "aws":
        try:
            resp = url_helper.readurl(
                f"{url}/latest/api/token",
                headers={TOKEN_TTL_HEADER: "21600"},
                headers_redact=[TOKEN_HEADER, TOKEN_TTL_HEADER],
                request_method="PUT",
                timeout=2,
            )
        except url_helper.UrlError as e:
            errors.append(f"helpers: PUT /latest/api/token failed: {e}")
            return None
        token = text(resp.contents)
        if not token:
            errors.append("helpers: PUT /latest/api/token gave an empty token")
            return None
        token_used = True

        def headers_cb(_url):
            return {TOKEN_HEADER: token}

    common = dict(
        api_version=API_VERSION,
        metadata_address=url,
        timeout=2,
        retries=retries,
        headers_cb=headers_cb,
        headers_redact=[TOKEN_HEADER, TOKEN_TTL_HEADER],
    )
    # These three log and swallow errors, returning "" or {}.
    ud = ec2.get_instance_userdata(**common)
    md = ec2.get_instance_metadata(**common)
    ident = ec2.get_instance_identity(**common)
    if not ud:
        errors.append("helpers: get_instance_userdata returned nothing")
    if not md:
        errors.append("helpers: get_instance_metadata returned nothing")
    if not ident:
        errors.append("helpers: get_instance_identity returned nothing")
    if not (ud and md and ident):
        return None

    doc = ident.get("document")
    if not isinstance(doc, dict):
        errors.append(
            "helpers: dynamic/instance-identity/document was not decoded "
            f"as a JSON object: {doc!r:.200}"
        )
        doc = {}
    placement = md.get("placement") or {}
    iam = md.get("iam") or {}
    return {
        "token_used": token_used,
        "instance_id": md.get("instance-id"),
        "local_hostname": md.get("local-hostname"),
        "public_keys": md.get("public-keys"),
        "availability_zone": placement.get("availability-zone"),
        "region": placement.get("region"),
        "iam_info": iam.get("info"),
        # The crawl must not descend into security-credentials.
        "iam_keys": sorted(iam),
        "meta_data_keys": sorted(md),
        "user_data": text(ud),
        "user_data_b64": b64(ud),
        "identity_keys": sorted(ident),
        "identity_document": {
            k: doc.get(k)
            for k in (
                "instanceId",
                "region",
                "availabilityZone",
                "accountId",
                "instanceType",
                "imageId",
                "privateIp",
            )
        },
    }


def run_datasource(url, platform, max_wait, tmp, errors):
    from cloudinit import distros, helpers, util
    from cloudinit.sources import DataSourceEc2 as dsmod

    # cloud-init checks every metadata URL with util.is_resolvable(), which
    # also resolves example.com and other names to detect DNS hijacking.
    # Only URL is ever used here, so answer for it alone.
    util.is_resolvable_url = lambda u: u == url

    paths = helpers.Paths(
        {
            "cloud_dir": os.path.join(tmp, "cloud"),
            "run_dir": os.path.join(tmp, "run"),
            "templates_dir": os.path.join(tmp, "templates"),
        }
    )
    distro = distros.fetch("debian")("debian", {}, paths)
    sys_cfg = {
        "datasource": {
            "Ec2": {
                "metadata_urls": [url],
                "timeout": 2,
                "max_wait": max_wait,
            }
        }
    }
    ds = dsmod.DataSourceEc2(sys_cfg, distro, paths)
    # The default list has 169.254.169.254; it is only a fallback for an
    # empty metadata_urls, but make sure it cannot be used.
    ds.metadata_urls = [url]
    # Platform identification reads DMI and /sys/hypervisor; force it.
    cloud_name = {
        "aws": dsmod.CloudNames.AWS,
        "unknown": dsmod.CloudNames.UNKNOWN,
    }[platform]
    ds._get_cloud_name = lambda: cloud_name

    if not ds.get_data():
        errors.append(
            f"datasource: DataSourceEc2.get_data() returned False "
            f"(platform {cloud_name}, metadata_urls [{url}])"
        )
        return None
    crawled = getattr(ds, "_crawled_metadata", {}) or {}

    # network_config matches the MACs of network/interfaces/macs/ against
    # this machine's NICs (read from /sys) and looks for a fallback NIC:
    # pretend the instance's primary MAC is eth0. The config is only
    # computed, never applied.
    mac = str(ds.metadata.get("mac") or "").lower()
    dsmod.net.get_interfaces_by_mac = lambda *a, **k: {mac: "eth0"}
    ds._fallback_interface = "eth0"
    netcfg = ds.network_config
    return {
        "cloud_name": ds.cloud_name,
        "platform_type": ds.platform_type,
        "subplatform": ds.subplatform,
        "metadata_address": ds.metadata_address,
        "api_version": crawled.get("_metadata_api_version"),
        "token_used": bool(ds._api_token),
        "instance_id": ds.get_instance_id(),
        "local_hostname": ds.metadata.get("local-hostname"),
        "hostname": ds.get_hostname().hostname,
        "public_keys": ds.get_public_ssh_keys(),
        "user_data": text(ds.userdata_raw),
        "user_data_b64": b64(ds.userdata_raw),
        "availability_zone": ds.availability_zone,
        "region": ds.region,
        "launch_index": ds.launch_index,
        "is_classic_instance": ds.is_classic_instance(),
        "network_config": netcfg,
        "identity_instance_id": (ds.identity or {}).get("instanceId"),
        "instance_data_written": os.path.exists(
            ds.paths.get_runpath("instance_data")
        ),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--platform", choices=("aws", "unknown"), default="aws")
    p.add_argument("--max-wait", type=int, default=10)
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()

    netguard.hard_timeout(60)
    netguard.clean_environ()
    netguard.install_guard(args.url)
    try:
        import cloudinit.version
        from cloudinit.sources import DataSourceEc2  # noqa: F401
        from cloudinit.sources.helpers import ec2  # noqa: F401
    except ImportError as e:
        netguard.fail(f"cannot import cloudinit: {e}", 4)
    # After the imports: importing cloudinit.log resets the root logger.
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )

    url = args.url.rstrip("/")
    errors = []
    with tempfile.TemporaryDirectory(prefix="imds-cloudinit-") as tmp:
        os.environ["HOME"] = tmp
        out = {
            "cloudinit_version": cloudinit.version.version_string(),
            "platform": args.platform,
            "helpers": run_helpers(url, args.platform, args.retries, errors),
            "datasource": run_datasource(
                url, args.platform, args.max_wait, tmp, errors
            ),
        }
    if errors:
        for e in errors:
            sys.stderr.write(f"cloudinit_client.py: {e}\n")
        sys.exit(1)
    json.dump(out, sys.stdout, indent=1, sort_keys=True, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
