#!/usr/bin/env python3
"""GStreamer's RTSP server with an H.264 test pattern, for scened's tests and benchmarks.

Serves rtsp://127.0.0.1:PORT/test (videotestsrc ! x264enc ! rtph264pay, parameter sets before
every key frame, one key frame a second), optionally behind basic authentication. Prints
`ready` once listening and, when stopped (SIGTERM or SIGINT), `sent N`: the frames it encoded.
`--resize-after S` changes the picture's size S seconds after the stream starts, as a camera
whose resolution is changed mid-stream does. `--write FILE --frames N` writes N frames of the
same stream to FILE (H.264 Annex B) instead of serving, for decoders to be compared on it.

Needs Debian's python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-{base,good,ugly}
(Homebrew: gstreamer, pygobject3).
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def size(text):
    width, height = text.split("x")
    return int(width), int(height)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int)
    parser.add_argument("--write")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=size, default=(640, 480))
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument(
        "--pattern",
        default="ball",
        help="videotestsrc properties after pattern=, e.g. 'smpte horizontal-speed=4'",
    )
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--resize-after", type=float)
    parser.add_argument("--resize-to", type=size, default=(320, 240))
    args = parser.parse_args()

    Gst.init(None)
    width, height = args.size
    launch = (
        f"( videotestsrc pattern={args.pattern} is-live=true "
        f"! video/x-raw,width={width},height={height},framerate={args.fps}/1 "
        f"! videoscale ! capsfilter name=size caps=video/x-raw,width={width},height={height} "
        f"! videoconvert ! x264enc name=enc tune=zerolatency speed-preset=ultrafast "
        f"key-int-max={args.fps} ! video/x-h264,profile=baseline "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    if args.write is not None:
        return write(launch, args.write, args.frames)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    sent = [0]

    def count(_pad, _info):
        sent[0] += 1
        return Gst.PadProbeReturn.OK

    def configure(_factory, media):
        pipeline = media.get_element()
        encoder = pipeline.get_by_name("enc")
        encoder.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, count)
        if args.resize_after is not None:
            def resize():
                new_width, new_height = args.resize_to
                caps = Gst.Caps.from_string(
                    f"video/x-raw,width={new_width},height={new_height}"
                )
                pipeline.get_by_name("size").set_property("caps", caps)
                print(f"resized {new_width}x{new_height}", flush=True)
                return False

            GLib.timeout_add(int(args.resize_after * 1000), resize)

    factory.connect("media-configure", configure)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()

    def stop():
        print(f"sent {sent[0]}", flush=True)
        loop.quit()
        return False

    for number in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, number, stop)
    print("ready", flush=True)
    loop.run()
    return 0


def write(launch, path, frames):
    """The stream's first `frames` frames into `path`, as the server would send them."""
    description = (
        launch.strip("() ")
        .replace("is-live=true", f"num-buffers={frames}")
        .replace("video/x-h264,profile=baseline", "video/x-h264,profile=baseline,stream-format=byte-stream")
        .replace("rtph264pay name=pay0 pt=96 config-interval=1", f"filesink location={path}")
    )
    pipeline = Gst.parse_launch(description)
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(
        Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR
    )
    pipeline.set_state(Gst.State.NULL)
    if message.type == Gst.MessageType.ERROR:
        print(message.parse_error()[0].message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
