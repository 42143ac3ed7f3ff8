// Package config reads the YAML file of `imds serve --config FILE`: the
// addresses to listen on, logging, credential timing, and overrides of any
// value of the served instance (tags, user data, role, IMDSv2 mode, network
// interfaces, ...).
//
// Decoding is strict, because a misspelt key that is silently ignored makes
// imds serve something other than what the user believes: an unknown key, a
// value of the wrong type, a bad value, a duplicate key or a second YAML
// document is an error. Every problem is reported, not only the first, one
// per line as
//
//	FILE:LINE: FIELD: PROBLEM
//
// where FIELD is the dotted path of the key, such as
// instance.network_interfaces[0].mac. Problems found when the instance is
// derived and validated (ec2.Instance.Validate) point at the line of the key
// that set the value, or of the closest enclosing key.
//
// Every key is optional; an empty file means the defaults. A null value (a key
// with nothing after the colon) is the same as leaving the key out, except
// for role, where null or "" means an instance without an instance profile.
// public_ipv4: "" means no public address at all, and user_data: "" means no
// user data (EC2 has no empty user data); binary user data can be given
// inline as !!binary base64 or with user_data_file. Text values may be written
// unquoted even when YAML would read them as numbers: account_id: 012345678901
// and a tag cost-center: 4711 keep the digits as written. Relative paths
// (user_data_file, key_file, data_dir) are relative to the config file's
// directory. Anchors, aliases and merge keys (<<) are allowed.
//
// # The instance document
//
// The keys of instance:, of each item of instances:, of the files of
// `imds instance add --from-file` and of the admin API's bodies are one
// schema, InstanceDoc, defined once as Go types. The decoder walks the YAML
// (or JSON) tree against their fields (walk.go) and MarshalInstance writes
// them, so what is accepted and what is written cannot drift apart
// (FuzzInstanceDocument checks the round trip). The work of decoding grows
// with the document, not with what its aliases expand to: documents of
// 100,000 entries load, alias bombs are refused.
//
// Parse already derives and validates the instance, so a file that parses
// builds; File is read-only afterwards and BuildInstance may be called from
// several goroutines.
//
// # Example
//
// This is testdata/full.yaml, which the tests parse; it sets the common keys
// of one instance. docs/configuration.md documents every key, with an example
// that sets them all (TestReference keeps it in step with the decoder):
//
//	# imds serve --config imds.yaml
//	#
//	# Every key is optional. Whatever is left out is derived from the machine ID
//	# and the instance name, consistently across the metadata tree.
//
//	listen:
//	  - 127.0.0.1:1338
//	  - "[::1]:1338"
//	data_dir: /var/lib/imds
//
//	log:
//	  level: info
//	  format: json
//	  access_log: true
//
//	credentials:
//	  lifetime: 6h       # like the role session of an EC2 instance profile
//	  rotate_after: 1h   # new credentials are served long before the old expire
//
//	instance:
//	  name: web-1
//	  instance_id: i-0a1b2c3d4e5f60718
//	  account_id: "123456789012"
//	  region: eu-west-1
//	  availability_zone: eu-west-1b
//	  instance_type: t3.medium
//	  architecture: x86_64
//	  ami_id: ami-0c1c30571d2dae5c9
//	  reservation_id: r-0fedcba9876543210
//	  instance_life_cycle: spot
//	  pending_time: 2024-05-01T12:00:00Z
//	  monitoring: true
//	  placement:
//	    group_name: web-spread
//
//	  network_interfaces:
//	    - mac: 06:5a:1b:2c:3d:4e
//	      interface_id: eni-0123456789abcdef0
//	      local_ipv4s: [10.0.1.17, 10.0.1.18]
//	      public_ipv4s: [198.51.100.23]
//	      subnet_id: subnet-0aa11bb22cc33dd44
//	      subnet_ipv4_cidr: 10.0.1.0/24
//	      vpc_id: vpc-0123abcd4567ef890
//	      vpc_ipv4_cidr: 10.0.0.0/16
//	      security_groups:
//	        - {name: web, id: sg-0123456789abcdef0}
//	        - ssh-from-bastion
//	    - device_number: 1
//	      mac: 06:5a:1b:2c:3d:4f
//	      interface_id: eni-0fedcba9876543210
//	      local_ipv4s: [10.0.2.9]
//	      public_ipv4s: []   # no public address on the second interface
//	      subnet_id: subnet-0bb22cc33dd44ee55
//	      subnet_ipv4_cidr: 10.0.2.0/24
//	      vpc_id: vpc-0123abcd4567ef890
//
//	  block_devices:
//	    ami: /dev/xvda
//	    root: /dev/xvda
//	    ebs1: sdf
//
//	  public_keys:
//	    - name: deploy
//	      key_file: keys/deploy.pub   # relative to this file
//	    - name: admin
//	      key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4YW1wbGUta2V5LW5vdC1mb3ItcmVhbC11c2U admin@example.com
//
//	  tags:                # served in this order
//	    Name: web-1
//	    env: staging
//	    team: platform
//	    cost-center: 4711  # kept as written
//	  tags_in_metadata: true
//
//	  user_data_file: user-data.yaml   # relative to this file, served byte for byte
//
//	  role:
//	    name: web-server
//	    instance_profile_name: web-server-profile
//
//	  imdsv2: required
//	  http_endpoint: enabled
//	  hop_limit: 2
package config
