// The HTML reports render in headless Chromium with every image loaded
// (the report's script appends "[images ok N]" to the title when all images
// have a non-zero natural width).

#include <gtest/gtest.h>
#include <unistd.h>

#include "tests/require.hpp"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <string>
#include <sys/wait.h>

namespace {

std::string Shell(const std::string& cmd, int* status) {
  FILE* p = popen((cmd + " 2>/dev/null").c_str(), "r");
  std::string out;
  std::array<char, 4096> buf{};
  while (p && fgets(buf.data(), buf.size(), p)) out += buf.data();
  const int st = p ? pclose(p) : -1;
  *status = WEXITSTATUS(st);
  return out;
}

std::string Browser() {
  for (const char* b : {"chromium", "chromium-browser", "google-chrome"}) {
    if (std::system((std::string("command -v ") + b + " > /dev/null 2>&1").c_str()) == 0) return b;
  }
  return "";
}

// Loads `html` headless and returns the DOM after scripts ran.
std::string DumpDom(const std::filesystem::path& html) {
  // One profile per test process: chromium locks its profile, and ctest -j runs these tests side by side.
  const auto profile =
      std::filesystem::temp_directory_path() / ("lifeline_chromium_profile_" + std::to_string(getpid()));
  std::filesystem::remove_all(profile);
  int st = 0;
  const std::string dom =
      Shell("timeout 120 " + Browser() +
              " --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update "
              "--no-first-run --allow-file-access-from-files --virtual-time-budget=5000 --user-data-dir=" +
              profile.string() + " --dump-dom file://" + std::filesystem::absolute(html).string(),
          &st);
  EXPECT_EQ(st, 0) << "browser failed";
  return dom;
}

void ExpectAllImagesLoaded(const std::filesystem::path& html, int min_images) {
  const std::string dom = DumpDom(html);
  std::smatch m;
  // The title the script set (the script's own source also names the marks).
  ASSERT_TRUE(std::regex_search(dom, m, std::regex(R"(<title>[^<]*\[images ok (\d+)\]</title>)")))
      << dom.substr(0, 2000);
  EXPECT_GE(std::stoi(m[1]), min_images);
  EXPECT_NE(dom.find("data-images=\"ok\""), std::string::npos);
}

TEST(HtmlInBrowser, PaperReportRendersWithEveryImage) {
  LIFELINE_REQUIRE(!Browser().empty(), "chromium (scripts/setup.sh installs it)");
  const auto dir = std::filesystem::temp_directory_path() / "lifeline_paper_browser";
  std::filesystem::remove_all(dir);
  int st = 0;
  const std::string out = Shell(std::string(LIFELINE_BINARY) + " paper --out " + dir.string(), &st);
  ASSERT_EQ(st, 0) << out;
  ExpectAllImagesLoaded(dir / "index.html", 9);
}

TEST(HtmlInBrowser, WhatifReportRendersWithEveryImage) {
  LIFELINE_REQUIRE(!Browser().empty(), "chromium (scripts/setup.sh installs it)");
  const auto dir = std::filesystem::temp_directory_path() / "lifeline_whatif_browser";
  std::filesystem::remove_all(dir);
  int st = 0;
  const std::string out = Shell(std::string(LIFELINE_BINARY) +
                                  " whatif --sweep memory_bandwidth_gb_per_s=50:400:50 --format csv --out /dev/null "
                                  "--html " + dir.string(),
                              &st);
  ASSERT_EQ(st, 0) << out;
  ExpectAllImagesLoaded(dir / "index.html", 3);
}

TEST(HtmlInBrowser, BrokenImageIsDetected) {
  LIFELINE_REQUIRE(!Browser().empty(), "chromium (scripts/setup.sh installs it)");
  // The check itself must fail on a missing image: a report whose figure is gone.
  const auto dir = std::filesystem::temp_directory_path() / "lifeline_whatif_browser_broken";
  std::filesystem::remove_all(dir);
  int st = 0;
  Shell(std::string(LIFELINE_BINARY) + " whatif --html " + dir.string(), &st);
  ASSERT_EQ(st, 0);
  std::filesystem::remove(dir / "figures" / "roofline.png");
  const std::string dom = DumpDom(dir / "index.html");
  EXPECT_TRUE(std::regex_search(dom, std::regex(R"(<title>[^<]*\[images broken 1 of 2\]</title>)")))
      << dom.substr(0, 2000);
}

}  // namespace
