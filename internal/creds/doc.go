// Package creds serves the credentials of IAM roles the way EC2 does: from
// memory, refreshed in the background well before they expire.
//
// Each role whose credentials come from outside (static keys, the AWS SDK, a
// credential_process command) gets a Refresher. It fetches once at start-up,
// then again ahead of expiry; when a fetch fails it keeps serving the last
// good credentials until they expire, logs the failure and retries with
// backoff. A metadata request only ever reads the current credentials, so
// it never waits on STS or a subprocess. Roles without a source use the fake
// provider, which generates credentials locally.
package creds
