#include "common/progress.hpp"

#include <unistd.h>

namespace lifeline {

bool StderrIsTty() {
  static const bool tty = isatty(STDERR_FILENO) != 0;
  return tty;
}

namespace {
bool IsTty(std::FILE* f) { return f == stderr ? StderrIsTty() : isatty(fileno(f)) != 0; }
}  // namespace

ProgressLine::ProgressLine(Mode mode, std::FILE* out, double min_interval_s, double plain_interval_s)
    : ProgressLine(mode, out, IsTty(out), min_interval_s, plain_interval_s) {}

ProgressLine::ProgressLine(Mode mode, std::FILE* out, bool out_is_tty, double min_interval_s, double plain_interval_s)
    : out_(out),
      on_(mode == Mode::kAlways || (mode == Mode::kTerminal && out_is_tty)),
      tty_(out_is_tty),
      interval_s_(out_is_tty ? min_interval_s : plain_interval_s) {}

ProgressLine::~ProgressLine() {
  if (drawn_) Finish();
}

double ProgressLine::ElapsedSeconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

bool ProgressLine::Due() const {
  if (!on_) return false;
  if (!ever_) return true;
  return std::chrono::duration<double>(Clock::now() - last_).count() >= interval_s_;
}

void ProgressLine::Update(const std::string& text, bool force) {
  if (!on_ || (!force && !Due())) return;
  Draw(text);
}

void ProgressLine::Draw(const std::string& text) {
  last_ = Clock::now();
  ever_ = true;
  if (tty_) {
    // Spaces wipe what is left of a longer previous line.
    const std::string pad = text.size() < width_ ? std::string(width_ - text.size(), ' ') : std::string();
    std::fprintf(out_, "\r%s%s", text.c_str(), pad.c_str());
    width_ = text.size();
    drawn_ = true;
  } else {
    std::fprintf(out_, "%s\n", text.c_str());
  }
  std::fflush(out_);
}

void ProgressLine::Finish(const std::string& text) {
  if (!on_) return;
  if (!text.empty()) Draw(text);
  if (drawn_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
  drawn_ = false;
  ever_ = false;
  width_ = 0;
}

}  // namespace lifeline
