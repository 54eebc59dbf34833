#include "oci/console.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>

#include "core/sys/fd.h"
#include "core/sys/io.h"
#include "oci/sync.h"

namespace cryo::oci {

Status setup_console(int socket, unsigned rows, unsigned cols) {
  CRYO_ASSIGN(UniqueFd master, open_file("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (::unlockpt(master.get()) < 0) return errno_error("unlockpt");
  char name[128];
  if (::ptsname_r(master.get(), name, sizeof name) != 0) return errno_error("ptsname");
  if (rows || cols) {
    struct winsize ws = {};
    ws.ws_row = static_cast<unsigned short>(rows);
    ws.ws_col = static_cast<unsigned short>(cols);
    ::ioctl(master.get(), TIOCSWINSZ, &ws);
  }
  CRYO_ASSIGN(UniqueFd slave, open_file(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  CRYO_TRY(send_fd(socket, master.get(), name).wrap("sending the pty master to the console socket"));
  master.reset();
  if (::ioctl(slave.get(), TIOCSCTTY, 0) < 0) return errno_error("TIOCSCTTY");
  for (int fd = 0; fd < 3; fd++)
    if (::dup2(slave.get(), fd) < 0) return errno_error("dup2 pty");
  return {};
}

}  // namespace cryo::oci
