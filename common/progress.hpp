#pragma once
// Progress lines for long work. On a terminal one line is redrawn in place
// (`\r`), a few times a second at most, and ended with a newline; in a pipe or
// a log file nothing is printed unless asked for, and then plain lines, at
// most one every few seconds, so logs stay readable.

#include <chrono>
#include <cstdio>
#include <string>

namespace lifeline {

// True when standard error is a terminal (checked once).
bool StderrIsTty();

class ProgressLine {
 public:
  enum class Mode {
    kTerminal,  // only on a terminal (the default)
    kAlways,    // also when not a terminal, as plain lines
    kOff,
  };
  // `out` is stderr for users; tests pass another stream and say whether it is
  // a terminal. `min_interval_s` limits redraws on a terminal; plain lines come
  // at most every `plain_interval_s`.
  explicit ProgressLine(Mode mode = Mode::kTerminal, std::FILE* out = stderr, double min_interval_s = 0.2,
                        double plain_interval_s = 10.0);
  ProgressLine(Mode mode, std::FILE* out, bool out_is_tty, double min_interval_s, double plain_interval_s);
  ~ProgressLine();
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // Whether anything is ever shown.
  bool on() const { return on_; }
  // Whether Update() would show a line now (lets callers skip formatting).
  bool Due() const;
  // Shows `text` when due (always when `force`).
  void Update(const std::string& text, bool force = false);
  // Shows `text` (when not empty) and ends the line; later Updates start a new one.
  void Finish(const std::string& text = {});
  // Seconds since construction.
  double ElapsedSeconds() const;

 private:
  using Clock = std::chrono::steady_clock;
  void Draw(const std::string& text);

  std::FILE* out_;
  bool on_;
  bool tty_;
  double interval_s_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_{};
  bool drawn_ = false;  // a line has been drawn and not yet ended
  bool ever_ = false;   // anything drawn since the last Finish
  size_t width_ = 0;    // length of the line on the terminal
};

}  // namespace lifeline
