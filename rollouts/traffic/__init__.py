"""Traffic routing: the TrafficRouter protocol (base.py) and Istio (istio*.py).

Pure except for IstioTrafficRouter, which does its I/O only through the
IstioObjectStore the kube layer passes in. Never imports kopf or kubernetes.
"""
