// The window: the login screen until logged in, then the messenger. Errors from the bridge
// show as a toast over either.
import QtQuick 2.15
import QtQuick.Controls 2.15
import "."

ApplicationWindow {
    id: window
    width: 1000
    height: 700
    minimumWidth: 720
    minimumHeight: 480
    visible: true
    title: bridge.loggedIn ? qsTr("Messenger — %1").arg(bridge.userName) : qsTr("Messenger")
    color: bridge.loggedIn ? Theme.panel : Theme.yellow

    onActiveChanged: bridge.setActive(active)

    Loader {
        id: page
        anchors.fill: parent
        sourceComponent: bridge.loggedIn ? messenger : login
    }
    Component { id: login; LoginView {} }
    Component { id: messenger; MessengerView {} }

    Toast {
        id: toast
        anchors.horizontalCenter: parent.horizontalCenter
        anchors.top: parent.top
        anchors.topMargin: 16
    }
    Connections {
        target: bridge
        function onErrorOccurred(message) { toast.show(message) }
    }
}
