// SIGINT, SIGTERM and SIGHUP during a dump or a restore: noted, not fatal, so
// that the operation stops at its next step and undoes itself (the tree runs
// on as before; a half-made restore is killed; the network lock goes).
#pragma once

#include "core/sys/result.h"

namespace cryo {

// Catches the three signals (without SA_RESTART) for the rest of the process.
void catch_interrupts();
// The signal that arrived, or 0.
int interrupted();
// Fails with EINTR, naming the signal and `where`, once one has arrived.
Status check_interrupt(const char* where);

}  // namespace cryo
