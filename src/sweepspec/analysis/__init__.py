"""After the sweep: tables, statistics, plots and the report, from what the runners stored.

Data flows one way (spec -> compiler -> runner -> tracker -> analysis): these modules read
results and compute; none of them runs trials or imports an engine at module level. The
analysis table (:mod:`.table`) is read from the engine's storage or from a tracker
(:mod:`.mlflow`, :mod:`.wandb`); :mod:`.query` selects on it.
"""

from __future__ import annotations
