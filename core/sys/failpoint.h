// Failpoints: named steps at which cryo can be made to SIGKILL itself, so that
// tests can kill a dump or a restore at each of its steps in turn,
// deterministically, instead of by timing.
//
//   CRYO_FAILPOINT=NAME      die the first time step NAME is reached
//   CRYO_FAILPOINT=NAME:K    die the K-th time (1-based) step NAME is reached
//   CRYO_FAILPOINT=@N        die at the N-th step reached, whatever its name
//
// Before dying cryo writes "failpoint NAME #K (step N)" to stderr, so that a
// test sweeping @1, @2, ... knows where each run stopped; a run that reaches
// no matching step behaves as if the variable were unset.
#pragma once

namespace cryo {

// Marks a step; kills the process here if CRYO_FAILPOINT selects it.
void failpoint(const char* name);

}  // namespace cryo
