// Package admin is the admin API of a running `imds serve`: a small REST API
// over ec2.InstanceService, and a Client that implements the same interface
// over HTTP so that the CLI speaks in domain terms.
//
// The API listens on a Unix socket (mode 0600, in a directory created 0700),
// where the file mode is the access control, and optionally on a TCP address,
// where every request needs "Authorization: Bearer TOKEN". Requests that a
// browser would send (Origin, Referer or Sec-Fetch-Site headers) and Host
// names other than localhost, imds or an address (DNS rebinding) are refused,
// so that a web page cannot drive the API.
//
// # Routes
//
//	GET    /v1/health                 {"status": "ok"}
//	GET    /v1/instances              {"instances": [DOC, ...]}, derived, sorted by name
//	POST   /v1/instances              body: one instance, a list, or {instances: [...]}, YAML or JSON
//	                                  201 [DOC, ...]: the added instances, derived
//	GET    /v1/instances/{name}       DOC, derived
//	GET    /v1/instances/{name}/spec  DOC as given, before derivation
//	PUT    /v1/instances/{name}       body: one instance document; 200 DOC, derived
//	PATCH  /v1/instances/{name}       body: the JSON of an ec2.InstanceUpdate; 200 DOC, derived
//	DELETE /v1/instances/{name}       204
//	POST   /v1/instances/{name}/events  body: an event request; 200 the instance's events
//	GET|PUT|DELETE /v1/instances/{name}/faults, /v1/faults  the faults of one instance or of all
//	GET    /v1/instances/{name}/report  what the instance's application asked for
//	GET    /v1/requests?instance=&limit=&follow=  the request record (NDJSON with follow=1)
//	POST   /v1/credentials/rotate?role=  new credentials now; 204
//	GET    /metrics                   the Prometheus exposition, when Server.Metrics is set
//
// docs/admin-api.md documents each route with an example that its test runs.
//
// DOC is an instance in the schema of the config file's instance: section
// (config.MarshalInstance), including its read-only origin (config or api),
// which requests may carry and the server ignores. Request bodies are decoded
// strictly by config.ParseInstances, which refuses file references
// (user_data_file, key_file): the server never reads files for a client. A
// problem is reported as NAME:LINE: field: problem, where NAME is the ?file=
// query parameter (the CLI sends the file name the user gave) and LINE a
// line of the body; without ?file= as "line LINE: field: problem", and as
// "field: problem" when the body is one line (a generated JSON document).
//
// The events document (the answer of POST .../events) holds spot (the
// notice the instance shows: action, time, notice_time), spot_scheduled (a
// notice issued for later, which the instance sees nothing of until its
// notice_time), rebalance, maintenance (scheduled events and their history)
// and autoscaling_state (autoscaling/target-lifecycle-state, "" for none);
// the answer to a spot request adds spot_replaced, the notice it replaced.
// A spot request's at must not be in the past. The clear request withdraws
// all of it, maintenance history and the Auto Scaling state an asg request
// set included, and leaves faults alone.
//
// POST adds the instances one by one: when one fails, the error names it and
// the instances before it stay added (the message lists them); nothing after
// it is attempted.
//
// # Errors
//
// Every error is a JSON body {"error": {"code": CODE, "message": MESSAGE}}
// where CODE is an ec2 error code and the HTTP status comes from one table
// (see StatusOf). An error that is not an *ec2.Error is answered 500 with a
// generic message and logged server-side only.
package admin
