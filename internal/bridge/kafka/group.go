package kafka

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/config"
)

// groupOpts are the consumer-group options of a command route. With a
// group instance id the consumer is a static member (KIP-345): a node
// restarted within group_session_timeout rejoins as the same member and
// gets its partitions back without a rebalance, where a dynamic member
// would wait for its predecessor's session to time out. A static member
// does not leave the group when it closes, so a node stopped for good
// keeps its partitions until the session times out.
func groupOpts(cfg config.Kafka, cmd *command) []kgo.Opt {
	opts := []kgo.Opt{kgo.ConsumerGroup(cmd.group)}
	if cfg.GroupSessionTimeout > 0 { // zero: franz-go's 45 s
		opts = append(opts, kgo.SessionTimeout(cfg.GroupSessionTimeout))
	}
	if hb := cfg.GroupSessionTimeout / 3; hb > 0 && hb < 3*time.Second {
		opts = append(opts, kgo.HeartbeatInterval(hb)) // at most a third of the session
	}
	if id := cfg.GroupInstanceID; id != "" && id != config.GroupInstanceIDNone {
		opts = append(opts, kgo.InstanceID(id))
	}
	return opts
}

// checkGroups refuses two command routes in one group under one static
// instance id: each would fence the other out.
func checkGroups(cfg config.Kafka, cmds []*command) error {
	if cfg.GroupInstanceID == "" || cfg.GroupInstanceID == config.GroupInstanceIDNone {
		return nil
	}
	seen := map[string]string{}
	for _, c := range cmds {
		if other, ok := seen[c.group]; ok {
			return fmt.Errorf("kafka commands %q and %q share group %q: with kafka.group_instance_id %q each node has one member per group; give them different groups",
				other, c.name, c.group, cfg.GroupInstanceID)
		}
		seen[c.group] = c.name
	}
	return nil
}
