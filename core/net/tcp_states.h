// TCP connections outside ESTABLISHED: one still being set up (SYN_SENT)
// and the half-closed ones (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK,
// CLOSING). A dump reads them in repair mode like an established one, with
// the FINs left out of the queues and sequence numbers; a restore rebuilds the
// established connection in repair mode, then puts the FINs back: ours with
// shutdown(), the peer's (and its ACK of ours) as a segment made by hand and
// looped back to the socket, past the network lock (kRepairMark).
// Also connections restored closed (--tcp-close).
#pragma once

#include <sys/types.h>

#include <string>

#include "core/image/proto/files.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::net {

// Whether a TCP socket in this state (tcpi_state) is a connection cryo can
// save with --tcp-established.
bool is_connection_state(int state);
std::string tcp_state_name(int state);

// The peer a connection in SYN_SENT is being made to (getpeername() does not
// answer before the handshake): from the task's /proc/PID/net/tcp{,6}.
Result<image::SockAddr> connecting_peer(pid_t pid, int socket);

// Read in repair mode: the queue lengths (SIOCOUTQ, SIOCOUTQNSD) and the
// sequence numbers (TCP_QUEUE_SEQ) with our FIN and the peer's left out, and
// whether our FIN is still to be sent.
struct TcpCounts {
  int state = 0;
  uint32_t send_seq = 0, recv_seq = 0;
  int outq = 0, unsent = 0;
  bool fin_unsent = false;
};
void leave_out_fins(TcpCounts* c);

// The recorded state of a connection (0 in older images is ESTABLISHED);
// refuses a state no dump writes.
Result<int> recorded_state(const image::TcpConnection& t);
// The window as it was before the peer's FIN arrived (TCP_REPAIR_WINDOW
// refuses a window edge past the sequence numbers restored so far).
void window_before_fin(const image::TcpConnection& t, uint32_t* rcv_wup, uint32_t* rcv_wnd);

// In repair mode, with the sequence numbers set and bound: the SYN goes out
// again (held back by the network lock until the restore ends).
Status restore_syn_sent(int s, const image::Socket& sock);
// In repair mode, queues and window restored: brings the connection from
// ESTABLISHED to its recorded state.
Status restore_fins(int s, const image::Socket& sock);
// Whether leave_repair() must still send the unsent bytes (restore_fins sent
// them before our FIN).
bool unsent_sent_by_fins(const image::TcpConnection& t);

// A socket that behaves as a closed connection does: reads see the end of
// the stream, writes fail with EPIPE.
Result<UniqueFd> closed_connection(const image::Socket& sock);
// restore --tcp-close: every TCP connection of the image comes back closed.
void close_connections(image::Files* files);

}  // namespace cryo::net
