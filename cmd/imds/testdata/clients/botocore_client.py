#!/usr/bin/python3
"""Fetch IAM role credentials and the region from an IMDS with botocore.

Usage: botocore_client.py [--v1-disabled] URL

Runs botocore's own classes against the metadata service at URL (for example
http://127.0.0.1:1338):

  * botocore.utils.InstanceMetadataFetcher.retrieve_iam_role_credentials()
  * botocore.utils.InstanceMetadataRegionFetcher.retrieve_region()
  * a botocore session resolving credentials through its whole provider chain
    (get_credentials() must end at the instance metadata provider, method
    "iam-role"), and the session's IMDS region provider, which is what
    defaults_mode "auto" uses.

--v1-disabled also sets AWS_EC2_METADATA_V1_DISABLED / ec2_metadata_v1_disabled
so that botocore may not fall back to IMDSv1. Botocore versions without that
setting exit with status 3.

Prints one JSON object on stdout. The secret key and session token are never
printed, only whether they were present. Exits non-zero with a message on
stderr on any failure. Never talks to anything but URL and writes nothing
outside a temporary directory.
"""

import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402

import netguard  # noqa: E402

# Requests to the server carry these user agents, so that the test can tell
# the direct fetchers from the session in the server's access log.
FETCHER_UA = "imds-test-botocore-fetcher"


def describe_creds(access_key, secret_key, token, expiry):
    return {
        "access_key_id": access_key,
        "secret_present": bool(secret_key),
        "token_present": bool(token),
        "expiry": expiry,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--v1-disabled", action="store_true")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()

    netguard.hard_timeout(60)
    netguard.clean_environ()
    netguard.install_guard(args.url)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.debug else logging.WARNING,
    )

    try:
        import botocore
        import botocore.configprovider
        import botocore.session
        import botocore.utils
    except ImportError as e:
        netguard.fail(f"cannot import botocore: {e}", 4)

    v1_supported = (
        "ec2_metadata_v1_disabled"
        in botocore.configprovider.BOTOCORE_DEFAUT_SESSION_VARIABLES
    )
    if args.v1_disabled and not v1_supported:
        netguard.fail(
            f"botocore {botocore.__version__} does not support "
            "ec2_metadata_v1_disabled",
            3,
        )

    with tempfile.TemporaryDirectory(prefix="imds-botocore-") as home:
        # Nothing of the caller's configuration may take part: no credentials
        # in the environment or in files, no container provider, no boto2
        # config, so that the chain can only end at IMDS.
        os.environ.update(
            {
                "HOME": home,
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "BOTO_CONFIG": os.devnull,
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": args.url,
                "AWS_METADATA_SERVICE_TIMEOUT": "2",
                "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "1",
            }
        )
        imds_config = {"ec2_metadata_service_endpoint": args.url}
        fetcher_env = {}
        if args.v1_disabled:
            os.environ["AWS_EC2_METADATA_V1_DISABLED"] = "true"
            fetcher_env["AWS_EC2_METADATA_V1_DISABLED"] = "true"
            imds_config["ec2_metadata_v1_disabled"] = True

        out = {
            "botocore_version": botocore.__version__,
            "v1_disabled_supported": v1_supported,
            "v1_disabled": args.v1_disabled,
        }

        # 1. The fetcher the instance metadata credential provider uses.
        fetcher = botocore.utils.InstanceMetadataFetcher(
            timeout=2,
            num_attempts=1,
            env=fetcher_env,
            user_agent=FETCHER_UA,
            config=imds_config,
        )
        if fetcher.get_base_url() != args.url:
            netguard.fail(f"fetcher uses {fetcher.get_base_url()!r}")
        creds = fetcher.retrieve_iam_role_credentials()
        if not creds:
            netguard.fail(
                "InstanceMetadataFetcher.retrieve_iam_role_credentials() "
                "returned no credentials (run with --debug for details)"
            )
        out["fetcher"] = dict(
            role_name=creds["role_name"],
            **describe_creds(
                creds["access_key"],
                creds["secret_key"],
                creds["token"],
                creds["expiry_time"],
            ),
        )

        # 2. The region fetcher (placement/availability-zone/, with slash).
        region_fetcher = botocore.utils.InstanceMetadataRegionFetcher(
            timeout=2,
            num_attempts=1,
            env=fetcher_env,
            user_agent=FETCHER_UA,
            config=imds_config,
        )
        region = region_fetcher.retrieve_region()
        if not region:
            netguard.fail(
                "InstanceMetadataRegionFetcher.retrieve_region() "
                "returned no region"
            )
        out["region_fetcher"] = {"region": region}

        # 3. A whole session: the default credential chain, then the region.
        session = botocore.session.get_session()
        if session.get_config_variable("ec2_metadata_service_endpoint") != (
            args.url
        ):
            netguard.fail("the session did not pick up the endpoint")
        sc = session.get_credentials()
        if sc is None:
            netguard.fail("session.get_credentials() found no credentials")
        frozen = sc.get_frozen_credentials()
        expiry = getattr(sc, "_expiry_time", None)
        if isinstance(expiry, datetime.datetime):
            expiry = expiry.astimezone(datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        # botocore 1.29 does not resolve 'region' from IMDS in its config
        # chain (config_region stays None); the session's IMDS region
        # provider is what defaults_mode "auto" uses to compare regions.
        imds_region = botocore.utils.IMDSRegionProvider(session).provide()
        factory = session._get_internal_component("smart_defaults_factory")
        auto_mode = factory.resolve_auto_mode("eu-west-1")
        out["session"] = dict(
            method=sc.method,
            config_region=session.get_config_variable("region"),
            imds_region=imds_region,
            auto_mode_for_eu_west_1=auto_mode,
            user_agent=session.user_agent(),
            **describe_creds(
                frozen.access_key, frozen.secret_key, frozen.token, expiry
            ),
        )
        if sc.method != "iam-role":
            netguard.fail(
                f"session credentials came from {sc.method!r}, not iam-role"
            )
        if not imds_region:
            netguard.fail("IMDSRegionProvider(session).provide() gave no region")

        # Convenience copies of the main values.
        out.update(
            access_key_id=frozen.access_key,
            role_name=creds["role_name"],
            method=sc.method,
            expiry=creds["expiry_time"],
            region=region,
        )
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
