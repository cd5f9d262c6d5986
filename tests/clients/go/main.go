// A Go client of berthd (run by tests/clients.rs), written without generated
// code: it asks berthd's reflection service (grpc.reflection.v1) for the
// berth.v1 descriptors and builds its messages with dynamicpb, so it needs
// neither protoc nor protoc-gen-go. Code generated with protoc-gen-go and
// protoc-gen-go-grpc (go_package is set in the .proto files) works the same.
//
// Usage: berth-go-client SOCKET ARCHIVE REFERENCE
//
// On the target "unix://SOCKET" with no options: calls Agent.Info, imports
// the image ARCHIVE as REFERENCE, creates, starts and waits for a container,
// reads its logs, replays its events with resume, and reads the details of
// an error. Exits non-zero on any mismatch.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	_ "google.golang.org/protobuf/types/known/timestamppb"
)

func check(cond bool, format string, args ...any) {
	what := fmt.Sprintf(format, args...)
	if !cond {
		fmt.Fprintf(os.Stderr, "FAILED: %s\n", what)
		os.Exit(1)
	}
	fmt.Printf("ok: %s\n", what)
}

func must(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAILED: %s: %v\n", what, err)
		os.Exit(1)
	}
}

// loadDescriptors asks reflection for the file defining `symbol` and, one
// by one, for the files it imports, and registers them.
func loadDescriptors(ctx context.Context, conn *grpc.ClientConn, files *protoregistry.Files, symbol string) {
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	must(err, "reflection")
	defer stream.CloseSend()
	ask := func(req *rpb.ServerReflectionRequest) []*descriptorpb.FileDescriptorProto {
		must(stream.Send(req), "reflection request")
		resp, err := stream.Recv()
		must(err, "reflection response")
		var out []*descriptorpb.FileDescriptorProto
		for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
			fd := &descriptorpb.FileDescriptorProto{}
			must(proto.Unmarshal(b, fd), "file descriptor")
			out = append(out, fd)
		}
		return out
	}
	fds := ask(&rpb.ServerReflectionRequest{
		MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol},
	})
	check(len(fds) > 0, "reflection v1 describes %s", symbol)
	resolver := combined{files}
	var register func(fd *descriptorpb.FileDescriptorProto)
	register = func(fd *descriptorpb.FileDescriptorProto) {
		if _, err := resolver.FindFileByPath(fd.GetName()); err == nil {
			return // already known, or a well-known type Go has
		}
		for _, dep := range fd.GetDependency() {
			if _, err := resolver.FindFileByPath(dep); err != nil {
				for _, d := range ask(&rpb.ServerReflectionRequest{
					MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: dep},
				}) {
					register(d)
				}
			}
		}
		f, err := protodesc.NewFile(fd, resolver)
		must(err, "building "+fd.GetName())
		must(files.RegisterFile(f), "registering "+fd.GetName())
	}
	for _, fd := range fds {
		register(fd)
	}
}

// combined resolves in the files from reflection, then in Go's own.
type combined struct{ files *protoregistry.Files }

func (c combined) FindFileByPath(p string) (protoreflect.FileDescriptor, error) {
	if f, err := c.files.FindFileByPath(p); err == nil {
		return f, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(p)
}

func (c combined) FindDescriptorByName(n protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := c.files.FindDescriptorByName(n); err == nil {
		return d, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(n)
}

// api calls berth.v1 methods with messages written and read as JSON.
type api struct {
	conn  *grpc.ClientConn
	files *protoregistry.Files
}

func (a api) method(full string) protoreflect.MethodDescriptor {
	i := strings.LastIndex(full, ".")
	d, err := a.files.FindDescriptorByName(protoreflect.FullName(full[:i]))
	must(err, "service of "+full)
	m := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(full[i+1:]))
	if m == nil {
		must(fmt.Errorf("not described by reflection"), full)
	}
	return m
}

func path(m protoreflect.MethodDescriptor) string {
	return "/" + string(m.Parent().FullName()) + "/" + string(m.Name())
}

func message(d protoreflect.MessageDescriptor, js string) *dynamicpb.Message {
	msg := dynamicpb.NewMessage(d)
	must(protojson.Unmarshal([]byte(js), msg), "request "+js)
	return msg
}

// toMap gives a response as JSON values (protojson names: lowerCamelCase,
// 64-bit integers as strings).
func toMap(m proto.Message) map[string]any {
	b, err := protojson.Marshal(m)
	must(err, "response")
	out := map[string]any{}
	must(json.Unmarshal(b, &out), "response JSON")
	return out
}

func (a api) call(ctx context.Context, full, js string) (map[string]any, error) {
	m := a.method(full)
	resp := dynamicpb.NewMessage(m.Output())
	err := a.conn.Invoke(ctx, path(m), message(m.Input(), js), resp)
	if err != nil {
		return nil, err
	}
	return toMap(resp), nil
}

// stream sends `reqs` and reads responses until `stop` says so or the
// stream ends.
func (a api) stream(ctx context.Context, full string, reqs []proto.Message, stop func(map[string]any) bool) []map[string]any {
	m := a.method(full)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	desc := &grpc.StreamDesc{ServerStreams: m.IsStreamingServer(), ClientStreams: m.IsStreamingClient()}
	s, err := a.conn.NewStream(ctx, desc, path(m))
	must(err, full)
	for _, r := range reqs {
		must(s.SendMsg(r), full+" send")
	}
	must(s.CloseSend(), full+" close")
	var got []map[string]any
	for {
		resp := dynamicpb.NewMessage(m.Output())
		err := s.RecvMsg(resp)
		if err == io.EOF {
			return got
		}
		must(err, full+" receive")
		got = append(got, toMap(resp))
		if stop(got[len(got)-1]) {
			return got
		}
	}
}

func main() {
	socket, archive, reference := os.Args[1], os.Args[2], os.Args[3]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(err, "connecting")
	defer conn.Close()
	files := &protoregistry.Files{}
	for _, s := range []string{"berth.v1.Agent", "berth.v1.Containers", "berth.v1.Images", "berth.v1.Events"} {
		loadDescriptors(ctx, conn, files, s)
	}
	a := api{conn, files}

	info, err := a.call(ctx, "berth.v1.Agent.Info", `{}`)
	must(err, "Info")
	check(info["version"] != "", "Info: version %v", info["version"])

	imp := a.method("berth.v1.Images.Import")
	reqs := []proto.Message{message(imp.Input(), fmt.Sprintf(`{"options":{"reference":%q}}`, reference))}
	data, err := os.ReadFile(archive)
	must(err, "reading the archive")
	for i := 0; i < len(data); i += 256 * 1024 {
		chunk := dynamicpb.NewMessage(imp.Input())
		chunk.Set(imp.Input().Fields().ByName("chunk"), protoreflect.ValueOfBytes(data[i:min(i+256*1024, len(data))]))
		reqs = append(reqs, chunk)
	}
	imported := a.stream(ctx, "berth.v1.Images.Import", reqs, func(map[string]any) bool { return false })
	images, _ := imported[0]["images"].([]any)
	check(len(images) == 1, "Import")
	id := images[0].(map[string]any)["id"]
	listed, err := a.call(ctx, "berth.v1.Images.List", `{}`)
	must(err, "images List")
	found := false
	for _, i := range listed["images"].([]any) {
		found = found || i.(map[string]any)["id"] == id
	}
	check(found, "images List shows it")

	created, err := a.call(ctx, "berth.v1.Containers.Create",
		fmt.Sprintf(`{"spec":{"image":%q,"command":["sh","-c","echo hi from go; exit 3"]}}`, reference))
	must(err, "Create")
	cid := created["container"].(map[string]any)["id"].(string)
	_, err = a.call(ctx, "berth.v1.Containers.Start", fmt.Sprintf(`{"id":%q}`, cid))
	must(err, "Start")
	waited, err := a.call(ctx, "berth.v1.Containers.Wait", fmt.Sprintf(`{"id":%q}`, cid))
	must(err, "Wait")
	code := waited["exit"].(map[string]any)["exitCode"]
	check(code == 3.0, "Create, Start, Wait: exit code %v", code)

	logsReq := message(a.method("berth.v1.Containers.Logs").Input(), fmt.Sprintf(`{"id":%q,"follow":true}`, cid))
	var out strings.Builder
	for _, e := range a.stream(ctx, "berth.v1.Containers.Logs", []proto.Message{logsReq}, func(map[string]any) bool { return false }) {
		b, err := base64.StdEncoding.DecodeString(e["data"].(string))
		must(err, "log data")
		out.Write(b)
	}
	check(out.String() == "hi from go\n", "Logs: %q", out.String())

	sub := a.method("berth.v1.Events.Subscribe")
	seen := a.stream(ctx, "berth.v1.Events.Subscribe",
		[]proto.Message{message(sub.Input(), fmt.Sprintf(`{"containers":[%q],"fromSeq":"1"}`, cid))},
		func(e map[string]any) bool { return e["action"] == "EVENT_ACTION_EXITED" })
	var actions []string
	for _, e := range seen {
		actions = append(actions, e["action"].(string))
	}
	check(strings.Join(actions, ",") == "EVENT_ACTION_CREATED,EVENT_ACTION_STARTED,EVENT_ACTION_EXITED" &&
		seen[2]["exit"].(map[string]any)["exitCode"] == 3.0, "Subscribe from_seq=1: %v", actions)
	// Resume after the first event, as a reconnecting subscriber does.
	var first uint64
	fmt.Sscan(seen[0]["seq"].(string), &first)
	resumed := a.stream(ctx, "berth.v1.Events.Subscribe",
		[]proto.Message{message(sub.Input(), fmt.Sprintf(`{"containers":[%q],"fromSeq":"%d"}`, cid, first+1))},
		func(map[string]any) bool { return true })
	check(resumed[0]["seq"] == seen[1]["seq"] && resumed[0]["action"] == "EVENT_ACTION_STARTED",
		"Subscribe resumes at seq %v", resumed[0]["seq"])

	_, err = a.call(ctx, "berth.v1.Containers.Remove", fmt.Sprintf(`{"id":%q}`, cid))
	must(err, "Remove")
	_, err = a.call(ctx, "berth.v1.Containers.Inspect", fmt.Sprintf(`{"id":%q}`, cid))
	st := status.Convert(err)
	var reasons []string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reasons = append(reasons, info.Domain+"/"+info.Reason)
		}
	}
	check(err != nil && st.Code() == codes.NotFound && strings.Contains(strings.Join(reasons, " "), "berth.dev/CONTAINER_NOT_FOUND"),
		"error details: %v %v", st.Code(), reasons)
	fmt.Println("go client: all passed")
}
