// Package kafka is the MQTT <-> Kafka bridge: routes from MQTT topic
// filters to Kafka topics, the record mapping, and a broker.Interceptor
// that holds a QoS 1/2 publish's acknowledgement until Kafka has acked
// its records (acks=all, idempotent producer). See docs/kafka.md.
package kafka
