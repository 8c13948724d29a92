{
 "patcher": {
  "fileversion": 1,
  "appversion": {
   "major": 8,
   "minor": 5,
   "revision": 5,
   "architecture": "x64",
   "modernui": 1
  },
  "classnamespace": "box",
  "rect": [
   80.0,
   80.0,
   880.0,
   640.0
  ],
  "bglocked": 0,
  "openinpresentation": 0,
  "default_fontsize": 12.0,
  "default_fontface": 0,
  "default_fontname": "Arial",
  "gridonopen": 1,
  "gridsize": [
   15.0,
   15.0
  ],
  "boxes": [
   {
    "box": {
     "id": "obj-title",
     "maxclass": "comment",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      20,
      10,
      820,
      22
     ],
     "text": "Invisible Strings \u2014 receives the OSC stream of `istrings demo` / `istrings infer` on UDP port 7000 (run: istrings demo --osc 127.0.0.1:7000). Schema: docs/osc.md"
    }
   },
   {
    "box": {
     "id": "obj-udp",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      20,
      50,
      110,
      22
     ],
     "outlettype": [
      ""
     ],
     "text": "udpreceive 7000"
    }
   },
   {
    "box": {
     "id": "obj-route",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 9,
     "patching_rect": [
      20,
      90,
      820,
      22
     ],
     "outlettype": [
      "",
      "",
      "",
      "",
      "",
      "",
      "",
      "",
      ""
     ],
     "text": "route /istrings/frame /istrings/status /istrings/dancer/0/joints /istrings/dancer/1/joints /istrings/edges/top /istrings/edges/6 /istrings/names /istrings/forecast/320/dancer/1"
    }
   },
   {
    "box": {
     "id": "obj-frame-unpack",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 4,
     "patching_rect": [
      20,
      140,
      110,
      22
     ],
     "outlettype": [
      "int",
      "float",
      "int",
      "int"
     ],
     "text": "unpack i f i i"
    }
   },
   {
    "box": {
     "id": "obj-frame-0",
     "maxclass": "number",
     "numinlets": 1,
     "numoutlets": 2,
     "patching_rect": [
      20,
      175,
      60,
      22
     ],
     "outlettype": [
      "",
      "bang"
     ]
    }
   },
   {
    "box": {
     "id": "obj-frame-c0",
     "maxclass": "comment",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      20,
      200,
      65,
      20
     ],
     "text": "seq"
    }
   },
   {
    "box": {
     "id": "obj-frame-1",
     "maxclass": "flonum",
     "numinlets": 1,
     "numoutlets": 2,
     "patching_rect": [
      90,
      175,
      60,
      22
     ],
     "outlettype": [
      "",
      "bang"
     ]
    }
   },
   {
    "box": {
     "id": "obj-frame-c1",
     "maxclass": "comment",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      90,
      200,
      65,
      20
     ],
     "text": "latency ms"
    }
   },
   {
    "box": {
     "id": "obj-frame-2",
     "maxclass": "number",
     "numinlets": 1,
     "numoutlets": 2,
     "patching_rect": [
      160,
      175,
      60,
      22
     ],
     "outlettype": [
      "",
      "bang"
     ]
    }
   },
   {
    "box": {
     "id": "obj-frame-c2",
     "maxclass": "comment",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      160,
      200,
      65,
      20
     ],
     "text": "dancers"
    }
   },
   {
    "box": {
     "id": "obj-frame-3",
     "maxclass": "number",
     "numinlets": 1,
     "numoutlets": 2,
     "patching_rect": [
      230,
      175,
      60,
      22
     ],
     "outlettype": [
      "",
      "bang"
     ]
    }
   },
   {
    "box": {
     "id": "obj-frame-c3",
     "maxclass": "comment",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      230,
      200,
      65,
      20
     ],
     "text": "skipped"
    }
   },
   {
    "box": {
     "id": "obj-status-set",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      320,
      140,
      80,
      22
     ],
     "outlettype": [
      ""
     ],
     "text": "prepend set"
    }
   },
   {
    "box": {
     "id": "obj-status",
     "maxclass": "message",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      320,
      175,
      180,
      22
     ],
     "outlettype": [
      ""
     ],
     "text": ""
    }
   },
   {
    "box": {
     "id": "obj-status-c",
     "maxclass": "comment",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      320,
      200,
      300,
      20
     ],
     "text": "status: ok, one-dancer, no-dancers, no-model, no-input"
    }
   },
   {
    "box": {
     "id": "obj-j0-iter",
     "maxclass": "newobj",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      20,
      250,
      70,
      22
     ],
     "outlettype": [
      ""
     ],
     "text": "zl.iter 3"
    }
   },
   {
    "box": {
     "id": "obj-j0-unpack",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 3,
     "patching_rect": [
      20,
      285,
      90,
      22
     ],
     "outlettype": [
      "float",
      "float",
      "float"
     ],
     "text": "unpack f f f"
    }
   },
   {
    "box": {
     "id": "obj-j0-0",
     "maxclass": "flonum",
     "numinlets": 1,
     "numoutlets": 2,
     "patching_rect": [
      20,
      320,
      55,
      22
     ],
     "outlettype": [
      "",
      "bang"
     ]
    }
   },
   {
    "box": {
     "id": "obj-j0-1",
     "maxclass": "flonum",
     "numinlets": 1,
     "numoutlets": 2,
     "patching_rect": [
      80,
      320,
      55,
      22
     ],
     "outlettype": [
      "",
      "bang"
     ]
    }
   },
   {
    "box": {
     "id": "obj-j0-2",
     "maxclass": "flonum",
     "numinlets": 1,
     "numoutlets": 2,
     "patching_rect": [
      140,
      320,
      55,
      22
     ],
     "outlettype": [
      "",
      "bang"
     ]
    }
   },
   {
    "box": {
     "id": "obj-j0-c",
     "maxclass": "comment",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      20,
      345,
      190,
      48
     ],
     "text": "dancer 0: 18 joints \u00d7 (x, y, z) m, canonical order (zl.iter 3 \u2192 one joint at a time)"
    }
   },
   {
    "box": {
     "id": "obj-j1-iter",
     "maxclass": "newobj",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      220,
      250,
      70,
      22
     ],
     "outlettype": [
      ""
     ],
     "text": "zl.iter 3"
    }
   },
   {
    "box": {
     "id": "obj-j1-unpack",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 3,
     "patching_rect": [
      220,
      285,
      90,
      22
     ],
     "outlettype": [
      "float",
      "float",
      "float"
     ],
     "text": "unpack f f f"
    }
   },
   {
    "box": {
     "id": "obj-j1-0",
     "maxclass": "flonum",
     "numinlets": 1,
     "numoutlets": 2,
     "patching_rect": [
      220,
      320,
      55,
      22
     ],
     "outlettype": [
      "",
      "bang"
     ]
    }
   },
   {
    "box": {
     "id": "obj-j1-1",
     "maxclass": "flonum",
     "numinlets": 1,
     "numoutlets": 2,
     "patching_rect": [
      280,
      320,
      55,
      22
     ],
     "outlettype": [
      "",
      "bang"
     ]
    }
   },
   {
    "box": {
     "id": "obj-j1-2",
     "maxclass": "flonum",
     "numinlets": 1,
     "numoutlets": 2,
     "patching_rect": [
      340,
      320,
      55,
      22
     ],
     "outlettype": [
      "",
      "bang"
     ]
    }
   },
   {
    "box": {
     "id": "obj-j1-c",
     "maxclass": "comment",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      220,
      345,
      190,
      48
     ],
     "text": "dancer 1: 18 joints \u00d7 (x, y, z) m, canonical order (zl.iter 3 \u2192 one joint at a time)"
    }
   },
   {
    "box": {
     "id": "obj-top-iter",
     "maxclass": "newobj",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      440,
      250,
      70,
      22
     ],
     "outlettype": [
      ""
     ],
     "text": "zl.iter 3"
    }
   },
   {
    "box": {
     "id": "obj-top-unpack",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 3,
     "patching_rect": [
      440,
      285,
      90,
      22
     ],
     "outlettype": [
      "int",
      "int",
      "float"
     ],
     "text": "unpack i i f"
    }
   },
   {
    "box": {
     "id": "obj-top-0",
     "maxclass": "number",
     "numinlets": 1,
     "numoutlets": 2,
     "patching_rect": [
      440,
      320,
      55,
      22
     ],
     "outlettype": [
      "",
      "bang"
     ]
    }
   },
   {
    "box": {
     "id": "obj-top-1",
     "maxclass": "number",
     "numinlets": 1,
     "numoutlets": 2,
     "patching_rect": [
      500,
      320,
      55,
      22
     ],
     "outlettype": [
      "",
      "bang"
     ]
    }
   },
   {
    "box": {
     "id": "obj-top-2",
     "maxclass": "flonum",
     "numinlets": 1,
     "numoutlets": 2,
     "patching_rect": [
      560,
      320,
      55,
      22
     ],
     "outlettype": [
      "",
      "bang"
     ]
    }
   },
   {
    "box": {
     "id": "obj-top-c",
     "maxclass": "comment",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      440,
      345,
      190,
      34
     ],
     "text": "strongest strings: dancer-0 joint i, dancer-1 joint j, strength 0..1"
    }
   },
   {
    "box": {
     "id": "obj-e6",
     "maxclass": "newobj",
     "numinlets": 2,
     "numoutlets": 2,
     "patching_rect": [
      640,
      250,
      70,
      22
     ],
     "outlettype": [
      "",
      ""
     ],
     "text": "zl.nth 10"
    }
   },
   {
    "box": {
     "id": "obj-e6-v",
     "maxclass": "flonum",
     "numinlets": 1,
     "numoutlets": 2,
     "patching_rect": [
      640,
      285,
      60,
      22
     ],
     "outlettype": [
      "",
      "bang"
     ]
    }
   },
   {
    "box": {
     "id": "obj-e6-c",
     "maxclass": "comment",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      640,
      310,
      190,
      34
     ],
     "text": "string l_wrist (dancer 0) \u2192 r_wrist (dancer 1): /istrings/edges/6, item 10"
    }
   },
   {
    "box": {
     "id": "obj-names-set",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      20,
      420,
      80,
      22
     ],
     "outlettype": [
      ""
     ],
     "text": "prepend set"
    }
   },
   {
    "box": {
     "id": "obj-names",
     "maxclass": "message",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      20,
      455,
      820,
      22
     ],
     "outlettype": [
      ""
     ],
     "text": ""
    }
   },
   {
    "box": {
     "id": "obj-fc-iter",
     "maxclass": "newobj",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      640,
      370,
      70,
      22
     ],
     "outlettype": [
      ""
     ],
     "text": "zl.iter 3"
    }
   },
   {
    "box": {
     "id": "obj-fc-c",
     "maxclass": "comment",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      640,
      395,
      190,
      34
     ],
     "text": "dancer 1, 320 ms ahead (only with a forecaster)"
    }
   },
   {
    "box": {
     "id": "obj-load",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      20,
      510,
      60,
      22
     ],
     "outlettype": [
      "bang"
     ],
     "text": "loadbang"
    }
   },
   {
    "box": {
     "id": "obj-req",
     "maxclass": "message",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      20,
      545,
      140,
      22
     ],
     "outlettype": [
      ""
     ],
     "text": "/istrings/names 7000"
    }
   },
   {
    "box": {
     "id": "obj-send",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      20,
      580,
      150,
      22
     ],
     "text": "udpsend 127.0.0.1 7001"
    }
   },
   {
    "box": {
     "id": "obj-req-c",
     "maxclass": "comment",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      170,
      545,
      420,
      22
     ],
     "text": "asks for the joint names (answered to port 7000 of this machine); click to ask again"
    }
   }
  ],
  "lines": [
   {
    "patchline": {
     "source": [
      "obj-udp",
      0
     ],
     "destination": [
      "obj-route",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-route",
      0
     ],
     "destination": [
      "obj-frame-unpack",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-frame-unpack",
      0
     ],
     "destination": [
      "obj-frame-0",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-frame-unpack",
      1
     ],
     "destination": [
      "obj-frame-1",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-frame-unpack",
      2
     ],
     "destination": [
      "obj-frame-2",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-frame-unpack",
      3
     ],
     "destination": [
      "obj-frame-3",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-route",
      1
     ],
     "destination": [
      "obj-status-set",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-status-set",
      0
     ],
     "destination": [
      "obj-status",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-route",
      2
     ],
     "destination": [
      "obj-j0-iter",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-j0-iter",
      0
     ],
     "destination": [
      "obj-j0-unpack",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-j0-unpack",
      0
     ],
     "destination": [
      "obj-j0-0",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-j0-unpack",
      1
     ],
     "destination": [
      "obj-j0-1",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-j0-unpack",
      2
     ],
     "destination": [
      "obj-j0-2",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-route",
      3
     ],
     "destination": [
      "obj-j1-iter",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-j1-iter",
      0
     ],
     "destination": [
      "obj-j1-unpack",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-j1-unpack",
      0
     ],
     "destination": [
      "obj-j1-0",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-j1-unpack",
      1
     ],
     "destination": [
      "obj-j1-1",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-j1-unpack",
      2
     ],
     "destination": [
      "obj-j1-2",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-route",
      4
     ],
     "destination": [
      "obj-top-iter",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-top-iter",
      0
     ],
     "destination": [
      "obj-top-unpack",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-top-unpack",
      0
     ],
     "destination": [
      "obj-top-0",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-top-unpack",
      1
     ],
     "destination": [
      "obj-top-1",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-top-unpack",
      2
     ],
     "destination": [
      "obj-top-2",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-route",
      5
     ],
     "destination": [
      "obj-e6",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-e6",
      0
     ],
     "destination": [
      "obj-e6-v",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-route",
      6
     ],
     "destination": [
      "obj-names-set",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-names-set",
      0
     ],
     "destination": [
      "obj-names",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-route",
      7
     ],
     "destination": [
      "obj-fc-iter",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-load",
      0
     ],
     "destination": [
      "obj-req",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "obj-req",
      0
     ],
     "destination": [
      "obj-send",
      0
     ]
    }
   }
  ],
  "description": "Receives and unpacks the Invisible Strings OSC stream",
  "tags": "osc invisible-strings"
 }
}
