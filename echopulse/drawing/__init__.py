"""Drawing shared by every picture echopulse makes: ECG strips (beat marks, reasons, scale bars) and
sheets of frames. Matplotlib through its object API only: importing echopulse never picks a backend."""
