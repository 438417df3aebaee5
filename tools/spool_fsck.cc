#include "tools/fsck/fsck_tool.h"

int main(int argc, char** argv) { return spool::fsck::FsckMain(argc, argv); }
