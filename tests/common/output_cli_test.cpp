// Output paths given to `lifeline` commands: devices and links respected,
// and a path of the wrong kind is a usage error (exit 2) naming the flag.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "common/subprocess.hpp"

namespace lifeline {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kExplainCsv = {"explain", "--model", "qwen3-4b", "--device", "device_a",
                                              "--plan", "w4w2-gateup", "--context", "4096", "--format", "csv"};

class OutputCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("lifeline_out_cli_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  static ProcessResult Lifeline(std::vector<std::string> args) {
    args.insert(args.begin(), LIFELINE_BINARY);
    return RunProcess(args, /*merge_stderr=*/true);
  }
  static std::vector<std::string> With(std::vector<std::string> a, const std::vector<std::string>& more) {
    a.insert(a.end(), more.begin(), more.end());
    return a;
  }
  fs::path dir_;
};

TEST_F(OutputCliTest, ExplainCsvToACharacterDeviceLeavesItADevice) {
  // A private node with /dev/null's numbers when this process may make one
  // (a regression then cannot replace the machine's /dev/null); else the real one.
  fs::path null = dir_ / "null";
  if (mknod(null.c_str(), S_IFCHR | 0666, makedev(1, 3)) != 0) null = "/dev/null";
  const ProcessResult r = Lifeline(With(kExplainCsv, {"--out", null.string()}));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(fs::is_character_file(null)) << null << " is no longer a character device";
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), null == dir_ / "null" ? 1 : 0);
}

TEST_F(OutputCliTest, ExplainThroughASymlinkKeepsTheLink) {
  const fs::path target = dir_ / "breakdown.csv";
  std::ofstream(target) << "old\n";
  fs::create_symlink("breakdown.csv", dir_ / "latest.csv");
  const ProcessResult r = Lifeline(With(kExplainCsv, {"--out", (dir_ / "latest.csv").string()}));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(fs::is_symlink(dir_ / "latest.csv"));
  std::ifstream in(target);
  std::string header;
  std::getline(in, header);
  EXPECT_NE(header, "old");
  EXPECT_NE(header.find(','), std::string::npos) << header;
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 2);
}

TEST_F(OutputCliTest, ExplainOutAtADirectoryOrUnderAFileIsExit2) {
  const ProcessResult d = Lifeline(With(kExplainCsv, {"--out", dir_.string()}));
  EXPECT_EQ(d.status, 2) << d.out;
  EXPECT_NE(d.out.find("--out " + dir_.string() + ": is a directory"), std::string::npos) << d.out;
  std::ofstream(dir_ / "file") << "x\n";
  const fs::path under = dir_ / "file" / "out.csv";
  const ProcessResult f = Lifeline(With(kExplainCsv, {"--out", under.string()}));
  EXPECT_EQ(f.status, 2) << f.out;
  EXPECT_NE(f.out.find("--out " + under.string() + ": "), std::string::npos) << f.out;
  EXPECT_EQ(f.out.find("internal"), std::string::npos) << f.out;
}

TEST_F(OutputCliTest, PaperOutAtARegularFileIsExit2NamingOut) {
  const fs::path file = dir_ / "paper.txt";
  std::ofstream(file) << "keep me\n";
  const ProcessResult r = Lifeline({"paper", "--out", file.string()});
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("--out " + file.string() + ": "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("is a file, not a directory"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("internal"), std::string::npos) << r.out;
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "keep me");
}

TEST_F(OutputCliTest, WhatifHtmlAtARegularFileIsExit2NamingHtml) {
  const fs::path file = dir_ / "report.html";
  std::ofstream(file) << "x\n";
  const ProcessResult r = Lifeline({"whatif", "--model", "qwen3-4b", "--device", "device_a", "--html", file.string()});
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("--html " + file.string() + ": "), std::string::npos) << r.out;
}

}  // namespace
}  // namespace lifeline
