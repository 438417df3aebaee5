#include "fsck/fsck.h"

int main(int argc, char** argv) { return spool::fsck::FsckMain(argc, argv); }
