package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// maxErrorKinds bounds the error table so an unusual error text (with an
// address or a number in it) cannot grow it without limit.
const maxErrorKinds = 32

// fail counts err under "stage: kind" and returns it wrapped with the stage.
func (r *runner) fail(stage string, err error) error {
	key := stage + ": " + errorKind(err)
	r.errMu.Lock()
	if _, ok := r.errs[key]; !ok && len(r.errs) >= maxErrorKinds {
		key = stage + ": other"
	}
	r.errs[key]++
	r.errMu.Unlock()
	r.errCount.Add(1)
	return fmt.Errorf("%s: %w", stage, err)
}

// errorKind names err by its cause: a reason code, an errno or a timeout.
func errorKind(err error) string {
	var code packet.Code
	var errno syscall.Errno
	var ne net.Error
	switch {
	case errors.As(err, &code):
		return fmt.Sprintf("0x%02x %s", code.Value, code.Reason)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by broker"
	case errors.Is(err, net.ErrClosed):
		return "closed"
	case errors.As(err, &errno):
		return strings.ToLower(errno.Error())
	}
	return err.Error()
}

// reasonError turns a CONNACK, SUBACK, ack or DISCONNECT reason code into
// the codec's error value, so it prints with its name.
func reasonError(v packet.Version, b byte) error {
	if v < packet.V5 {
		switch b {
		case 0x80:
			return packet.Code{Value: b, Reason: "failure"}
		case 1, 2, 3, 4, 5:
			return []packet.Code{packet.V3UnacceptableProtocolVersion, packet.V3IdentifierRejected,
				packet.V3ServerUnavailable, packet.V3BadUsernameOrPassword, packet.V3NotAuthorized}[b-1]
		}
	}
	for _, c := range v5Codes {
		if c.Value == b {
			return c
		}
	}
	return packet.Code{Value: b, Reason: "unknown reason code"}
}

var v5Codes = []packet.Code{
	packet.NormalDisconnection, packet.ErrUnspecified, packet.ErrMalformedPacket, packet.ErrProtocolError,
	packet.ErrImplementationSpecific, packet.ErrUnsupportedProtocolVersion, packet.ErrClientIdentifierNotValid,
	packet.ErrBadUsernameOrPassword, packet.ErrNotAuthorized, packet.ErrServerUnavailable, packet.ErrServerBusy,
	packet.ErrBanned, packet.ErrServerShuttingDown, packet.ErrBadAuthenticationMethod, packet.ErrKeepAliveTimeout,
	packet.ErrSessionTakenOver, packet.ErrTopicFilterInvalid, packet.ErrTopicNameInvalid, packet.ErrPacketIDInUse,
	packet.ErrPacketIDNotFound, packet.ErrReceiveMaximumExceeded, packet.ErrTopicAliasInvalid,
	packet.ErrPacketTooLarge, packet.ErrMessageRateTooHigh, packet.ErrQuotaExceeded, packet.ErrAdministrativeAction,
	packet.ErrPayloadFormatInvalid, packet.ErrRetainNotSupported, packet.ErrQoSNotSupported,
	packet.ErrUseAnotherServer, packet.ErrServerMoved, packet.ErrSharedSubscriptionsNotSupported,
	packet.ErrConnectionRateExceeded, packet.ErrMaximumConnectTime, packet.ErrSubscriptionIDsNotSupported,
	packet.ErrWildcardSubscriptionsNotSupported,
}
