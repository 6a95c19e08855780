package metrics

import (
	"strconv"

	"github.com/culexmq/culex/internal/broker"
)

var (
	connections        = desc("connections", "Clients connected now, by listener and MQTT protocol version.", "listener", "protocol")
	connected          = desc("clients_connected", "Clients connected now (the sum of culex_connections).")
	refusedTotal       = desc("connects_refused_total", "CONNECTs refused, by CONNACK reason (quota_exceeded: mqtt.max_connections or max_sessions; banned; bad_user_name_or_password; not_authorized; ...).", "reason")
	disconnectsTotal   = desc("disconnects_total", "Connections that ended after CONNACK.")
	sessions           = desc("sessions", "Sessions held, connected or not.")
	sessionsPersistent = desc("sessions_persistent", "Persistent sessions (session expiry > 0), counted against mqtt.max_sessions.")
	sessionsRefused    = desc("sessions_refused_total", "CONNECTs refused at mqtt.max_sessions or max_sessions_per_identity.")
	takeoverRefused    = desc("takeover_refused_total", "CONNECTs refused because the client id's session belongs to another identity.")
	bindingRefused     = desc("client_id_binding_refused_total", "CONNECTs refused by auth.client_id_binding.")
	messagesIn         = desc("messages_received_total", "PUBLISH packets received from clients, by QoS.", "qos")
	messagesOut        = desc("messages_sent_total", "PUBLISH packets sent to clients, by QoS.", "qos")
	bytesIn            = desc("received_bytes_total", "Bytes read from client sockets.")
	bytesOut           = desc("sent_bytes_total", "Bytes written to client sockets.")
	dropped            = desc("messages_dropped_total", "Message copies not delivered, by reason (queue_full, outbound_full, packet_too_large, expired, not_authorized, inflight, offline, invalid, intercepted, route_full, log_limit).", "reason")
	queued             = desc("queued_messages", "Messages waiting in session queues for delivery.")
	subscriptions      = desc("subscriptions", "Subscriptions, shared ones included.")
	retained           = desc("retained_messages", "Retained messages stored.")
	retainedRefused    = desc("retained_refused_total", "Retained messages not stored at mqtt.max_retained_messages or max_retained_bytes.")
	pollErrors         = desc("poll_errors_total", "Failed waits of the socket poller, each recovered from on a new epoll set.")
)

func collectBroker(e emitter, b *broker.Broker) {
	st := b.Stats()
	load := b.Load()
	for _, c := range load.Connections {
		e.gauge(connections, float64(c.N), c.Listener, c.Version.String())
	}
	e.gauge(queued, float64(load.Queued))
	for code, n := range b.Refused() {
		e.counter(refusedTotal, float64(n), reasonLabel(code.Reason))
	}
	e.gauge(connected, float64(st.ClientsConnected))
	e.counter(disconnectsTotal, float64(st.Disconnects))
	e.gauge(sessions, float64(st.Sessions))
	e.gauge(sessionsPersistent, float64(st.PersistentSessions))
	e.counter(sessionsRefused, float64(st.SessionsRefused))
	e.counter(takeoverRefused, float64(st.TakeoverRefused))
	e.counter(bindingRefused, float64(st.BindingRefused))
	for q := range st.PublishesInQoS {
		qos := strconv.Itoa(q)
		e.counter(messagesIn, float64(st.PublishesInQoS[q]), qos)
		e.counter(messagesOut, float64(st.PublishesOutQoS[q]), qos)
	}
	e.counter(bytesIn, float64(st.BytesIn))
	e.counter(bytesOut, float64(st.BytesOut))
	for _, r := range sortedKeys(st.Drops) {
		e.counter(dropped, float64(st.Drops[r]), r)
	}
	e.gauge(subscriptions, float64(st.Subscriptions))
	e.gauge(retained, float64(st.Retained))
	e.counter(retainedRefused, float64(st.RetainedRefused))
	e.counter(pollErrors, float64(st.PollErrors))
}
