// Package integration drives a Culex broker through real MQTT clients: the
// Paho Go clients (MQTT 3.1.1 and 5.0), mosquitto_pub/mosquitto_sub, raw
// sockets speaking the packet codec, and the culex binary itself for crash
// durability. Every test starts its own broker on loopback port 0 and bounds
// every wait with a deadline.
package integration
