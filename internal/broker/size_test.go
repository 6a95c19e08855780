package broker

import (
	"testing"
	"unsafe"
)

func TestSizes(t *testing.T) {
	t.Logf("conn %d session %d ClientInfo %d outMsg %d Message %d pending %d", unsafe.Sizeof(conn{}), unsafe.Sizeof(session{}), unsafe.Sizeof(ClientInfo{}), unsafe.Sizeof(outMsg{}), unsafe.Sizeof(Message{}), unsafe.Sizeof(pending{}))
}
