// Decodes an Annex B H.264 file with openh264 (the source the openh264 crate bundles), NAL by
// NAL, three times; prints CPU ms per decoded frame. Built and run by scripts/h264_decoders.sh.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>
#include "codec_api.h"
int main(int argc, char** argv) {
  FILE* f = fopen(argv[1], "rb"); std::vector<unsigned char> d; unsigned char b[65536]; size_t n;
  while ((n = fread(b, 1, sizeof b, f)) > 0) d.insert(d.end(), b, b + n);
  std::vector<size_t> starts;
  for (size_t i = 0; i + 3 < d.size(); i++) if (d[i]==0 && d[i+1]==0 && d[i+2]==1) { starts.push_back(i >= 1 && d[i-1]==0 ? i-1 : i); i += 2; }
  starts.push_back(d.size());
  for (int round = 0; round < 3; round++) {
    ISVCDecoder* dec; WelsCreateDecoder(&dec); SDecodingParam p; memset(&p, 0, sizeof p);
    p.sVideoProperty.eVideoBsType = VIDEO_BITSTREAM_AVC; dec->Initialize(&p);
    int frames = 0; clock_t t0 = clock();
    for (size_t k = 0; k + 1 < starts.size(); k++) {
      unsigned char* dst[3]; SBufferInfo info; memset(&info, 0, sizeof info);
      dec->DecodeFrameNoDelay(&d[starts[k]], (int)(starts[k+1]-starts[k]), dst, &info);
      if (info.iBufferStatus == 1) frames++;
    }
    double ms = 1000.0 * (clock() - t0) / CLOCKS_PER_SEC;
    printf("%s frames=%d ms/frame=%.3f\n", argv[1], frames, ms / frames);
    dec->Uninitialize(); WelsDestroyDecoder(dec);
  }
}
