"""Traffic routing: the TrafficRouter protocol (base.py) and Istio (istio*.py).

Pure VirtualService/DestinationRule document math: the engine
(rollouts/engine/mesh.py) runs IstioTrafficRouter over a PlannedIstioStore,
which records the replaces for the Plan; rollouts/kube/ sends them. No I/O;
never imports kopf or kubernetes.
"""
