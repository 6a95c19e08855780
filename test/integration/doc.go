// Package integration drives a Culex broker through real MQTT clients: the
// Paho Go clients (MQTT 3.1.1 and 5.0), mosquitto_pub/mosquitto_sub, raw
// sockets speaking the packet codec (for malformed input, exact wire sizes
// and reason codes), gorilla/websocket for framing, and the culex binary
// itself for kill -9 durability. Every test starts its own broker on
// loopback port 0 and bounds every wait with a deadline.
//
// Run with
//
//	go test -race -shuffle=on ./test/integration/
//
// It needs mosquitto_pub and mosquitto_sub (Debian: mosquitto-clients) and
// stdbuf (coreutils) on PATH: a test without them skips, or fails where
// CI=true; TestMain builds ./cmd/culex once. Tests that
// check timing bounds (keep-alive, connect timeout) are not parallel, so
// they run before the parallel ones on a quiet machine.
package integration
