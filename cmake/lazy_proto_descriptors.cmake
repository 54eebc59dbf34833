# cmake -DPB_CC=file.pb.cc -P lazy_proto_descriptors.cmake
#
# protoc's C++ code registers each .proto's descriptor with the generated pool
# from a static initializer: every start of cryo parsed all of them (about
# 1.6 million instructions, more than half of `cryo --version`), though a dump
# or restore never looks at a descriptor. Without that initializer the file is
# registered on first use instead: GetDescriptor() and GetReflection() (inspect's
# JSON, the hostile-image tests) go through AssignDescriptors, which adds the
# file and its imports to the pool before building it.
file(READ "${PB_CC}" text)
set(runner_re "PROTOBUF_ATTRIBUTE_INIT_PRIORITY2 static ::_pbi::AddDescriptorsRunner [A-Za-z0-9_]+\\([^)]*\\);")
string(REGEX MATCH "${runner_re}" found "${text}")
if(NOT found)
  message(FATAL_ERROR "${PB_CC}: no AddDescriptorsRunner found (another protoc version?): update cmake/lazy_proto_descriptors.cmake")
endif()
string(REGEX REPLACE "${runner_re}" "// Its descriptor is registered on first use (cmake/lazy_proto_descriptors.cmake)." text "${text}")
file(WRITE "${PB_CC}" "${text}")
