# cppetcd_proto_library(<name> PROTOS a.proto ... [GRPC] [DEPS lib ...])
# Generates C++ (and, with GRPC, gRPC service code) for .proto files that live
# under proto/ and import each other by paths relative to proto/
# (e.g. import "mvccpb/kv.proto"). Headers are included the same way:
# #include "mvccpb/kv.pb.h".
set(CPPETCD_PROTO_ROOT ${CMAKE_SOURCE_DIR}/proto)
set(CPPETCD_PROTO_OUT ${CMAKE_BINARY_DIR}/proto_gen)
file(MAKE_DIRECTORY ${CPPETCD_PROTO_OUT})

function(cppetcd_proto_library name)
  cmake_parse_arguments(ARG "GRPC" "" "PROTOS;DEPS" ${ARGN})
  set(srcs)
  foreach(p IN LISTS ARG_PROTOS)
    get_filename_component(dir ${p} DIRECTORY)
    get_filename_component(stem ${p} NAME_WE)
    set(base ${CPPETCD_PROTO_OUT}/${dir}/${stem})
    set(outs ${base}.pb.cc ${base}.pb.h)
    set(plugin_args)
    if(ARG_GRPC)
      list(APPEND outs ${base}.grpc.pb.cc ${base}.grpc.pb.h)
      set(plugin_args --grpc_out=${CPPETCD_PROTO_OUT} --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN})
    endif()
    add_custom_command(
      OUTPUT ${outs}
      COMMAND protobuf::protoc -I${CPPETCD_PROTO_ROOT} --cpp_out=${CPPETCD_PROTO_OUT} ${plugin_args}
              ${CPPETCD_PROTO_ROOT}/${p}
      DEPENDS ${CPPETCD_PROTO_ROOT}/${p} protobuf::protoc
      COMMENT "protoc ${p}")
    list(APPEND srcs ${base}.pb.cc)
    if(ARG_GRPC)
      list(APPEND srcs ${base}.grpc.pb.cc)
    endif()
  endforeach()
  add_library(${name} STATIC ${srcs})
  target_include_directories(${name} SYSTEM PUBLIC ${CPPETCD_PROTO_OUT})
  target_link_libraries(${name} PUBLIC protobuf::libprotobuf ${ARG_DEPS})
  if(ARG_GRPC)
    target_link_libraries(${name} PUBLIC gRPC::grpc++)
  endif()
endfunction()
