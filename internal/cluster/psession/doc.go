// Package psession keeps a cluster's persistent sessions on NATS
// JetStream: it implements broker.SessionStore (internal/broker,
// sessionstore.go) for the broker in cluster mode. docs/cluster.md
// ("Persistent sessions: storage") describes the behaviour and
// docs/durability.md what is on disk when.
//
// On the cores, with min(3, cores) replicas and file storage:
//
//   - the log: one stream, <prefix>_pmsgs, of the QoS 1/2 messages
//     persistent sessions are owed, each stored once whatever the number
//     of sessions: subject culex.<cluster>.pm.<topic as subject> (Store)
//     or culex.<cluster>.pd.<client id key> (StoreFor). Bounded by
//     cluster.sessions.max_log_bytes and max_log_age, oldest removed first;
//   - the records: one KV bucket, <prefix>_sessions, keyed by client id
//     (registry.Key), of broker.SessionRecord in a versioned binary form.
//
// Each node keeps in memory an index of every record's filters (from a
// watch of the bucket) for Persistent, reads the whole log with one
// consumer that it makes again from Head()+1 when it loses it (Deliver,
// reader.go; with Config.ReaderOnDemand only while held: HoldReader,
// ReleaseReader), and reads a resuming session's backlog at
// the log's leader message by message, going on with a consumer that
// lives for that read only when it is long (Backlog).
//
// # Using it (the server and the broker)
//
//	st, err := psession.New(psession.Config{
//		Conn: f.Conn(), Cluster: cc.Name, Prefix: bucketPrefix(cc.Name),
//		Timeout: cc.AckTimeout, MaxLogBytes: cc.Sessions.MaxLogBytes,
//		MaxLogAge: cc.Sessions.MaxLogAge, Logger: log,
//		SweepEvery: -1 on a replicant (0: the default, 30 s)})
//	opts.SessionStore = st            // before the broker starts
//	st.Deliver(fn)                    // once, before clients are accepted
//	go st.Start(ctx)                  // in the background, as registry.Start;
//	                                  // until it returns nil, Ready() is
//	                                  // ErrNotReady and every call fails with it
//	defer st.Close()                  // after the broker has shut down
//
// Notes for the broker:
//
//   - Every done (Store, StoreFor, Save, Delete) runs on the Store's
//     goroutines, never on the caller's (except after Close: then at
//     once, with ErrClosed), and within Config.Timeout
//     (cluster.ack_timeout): with no quorum it fails then (or sooner: no
//     stream leader answers at once). Writes of all kinds share one
//     ordered pipeline per node, published in call order.
//   - Load costs a read and a replicated write (it confirms the record
//     at a majority: a minority leader would answer a stale read). That
//     write's revision is the record's Rev; a Save with a Rev is a
//     compare-and-set on it (broker.ErrSessionMoved once another node
//     loaded the record or a sweep deleted it) and done gets the new one.
//   - Delete(clientID, rev) is a compare-and-set on rev too (0:
//     unconditionally): a node that missed its session's move gets
//     broker.ErrSessionMoved. It leaves a purge marker that JetStream
//     removes after Config.MarkerTTL (1 h).
//   - Config.Node, Incarnation and Alive (the registry's): a record saved
//     while its client was connected expires once Alive says its holder
//     is dead, its Session Expiry Interval after this node saw that.
//   - Config.ReaderOnDemand (the server sets it): the reader runs only
//     while held (broker.ReaderHolder); HoldReader starts one that does
//     not run at the log's last message, calls fn(last, "", nil) and
//     returns with Head at last; it stops Config.ReaderLinger (30 s)
//     after the last ReleaseReader.
//   - Head is set to seq before fn(seq) runs: a session that registers
//     for Deliver while fn runs may see seq both in Backlog(cursor, h)
//     and from fn. Register, read h := Head(), Backlog up to h, and drop
//     Deliver calls with seq <= h for that session.
//   - A Save's record is in this node's index (Persistent) before its
//     done runs; other nodes see it when their watch does (milliseconds):
//     StoreFor covers a message routed meanwhile.
//   - Backlog takes filters as the record holds them; a shared filter
//     ($share/g/f) reads nothing of Store's messages (nor does Persistent
//     count it): a group's message reaches a persistent member as its
//     StoreFor copy, which fn is told by its clientID. Its dropped is an
//     upper bound (the log cannot tell which removed messages matched).
//   - Errors wrap the cause; ErrNotReady, ErrClosed and ErrBusy can be
//     matched with errors.Is.
package psession
