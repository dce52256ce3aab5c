// Progress lines: redrawn with \r on a terminal, plain lines (or nothing) in
// a pipe, and always ended with a newline.

#include "common/progress.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace lifeline {
namespace {

std::string Contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  return s;
}

TEST(ProgressLine, NothingInAPipeByDefault) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressLine line(ProgressLine::Mode::kTerminal, f);  // a file is not a terminal
    EXPECT_FALSE(line.on());
    EXPECT_FALSE(line.Due());
    line.Update("step 1/2", /*force=*/true);
    line.Finish("step 2/2");
  }
  EXPECT_EQ(Contents(f), "");
  std::fclose(f);
}

TEST(ProgressLine, PlainRateLimitedLinesWhenAskedForInAPipe) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressLine line(ProgressLine::Mode::kAlways, f, /*out_is_tty=*/false, 0.0, /*plain_interval_s=*/3600.0);
    EXPECT_TRUE(line.on());
    line.Update("step 1/3");
    line.Update("step 2/3");  // within the interval: dropped
    line.Finish("step 3/3");  // the final state is always shown
  }
  EXPECT_EQ(Contents(f), "step 1/3\nstep 3/3\n");
  std::fclose(f);
}

TEST(ProgressLine, RedrawsInPlaceOnATerminalAndEndsTheLine) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressLine line(ProgressLine::Mode::kTerminal, f, /*out_is_tty=*/true, 0.0, 10.0);
    line.Update("sweep: 10/100 cells");
    line.Update("sweep: 9/100");  // shorter: the rest of the old line is wiped
  }  // destroyed without Finish: the line is still ended
  EXPECT_EQ(Contents(f), "\rsweep: 10/100 cells\rsweep: 9/100       \n");
  std::fclose(f);
}

TEST(ProgressLine, OffShowsNothingEvenOnATerminal) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressLine line(ProgressLine::Mode::kOff, f, /*out_is_tty=*/true, 0.0, 10.0);
    line.Update("x", true);
    line.Finish("y");
  }
  EXPECT_EQ(Contents(f), "");
  std::fclose(f);
}

TEST(ProgressLine, DetectsARealTerminal) {
  // A pseudo-terminal is a terminal to isatty(): the line is on and redrawn.
  const int master = posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(master, 0);
  ASSERT_EQ(grantpt(master), 0);
  ASSERT_EQ(unlockpt(master), 0);
  const int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
  ASSERT_GE(slave, 0);
  std::FILE* f = fdopen(slave, "w");
  ASSERT_NE(f, nullptr);
  {
    ProgressLine line(ProgressLine::Mode::kTerminal, f, 0.0, 10.0);
    EXPECT_TRUE(line.on());
    line.Finish("done");
  }
  std::fclose(f);
  // The terminal may hand the bytes over in more than one read: read until
  // the line's end arrives (or a second passes).
  std::string got;
  while (got.find('\n') == std::string::npos) {
    pollfd p{master, POLLIN, 0};
    if (poll(&p, 1, 1000) <= 0) break;
    char buf[64];
    const ssize_t n = read(master, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  // The terminal turns "\n" into "\r\n".
  EXPECT_EQ(got, "\rdone\r\n");
  close(master);
}

}  // namespace
}  // namespace lifeline
